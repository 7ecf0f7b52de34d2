//! The writer's side of DNSSEC: which zones are signed, their keys, and signing every new
//! zone version before it is committed.
//!
//! Every path that makes a new zone version goes through [`Shared::journal_zones`] or
//! `change_records`, and both sign here, with the served version as the source of reusable
//! signatures: a signed zone is never committed nor served with signatures over other data.
//! Keys are generated (ECDSA/Ed25519, microseconds) when a zone is first signed; their files
//! and the state file are written durably before the zone that publishes them. A key that
//! cannot be used (missing, corrupt, readable by others) is reported in `/v1/status` and the
//! log, the zone keeps serving its last signed version, and changes to it are refused. At
//! start, zones served from stored signatures that fit the configured policy are checked
//! (keys and state read, jobs planned) after the first answer, not before. It must not
//! answer queries nor parse HTTP.

use std::collections::HashMap;
use std::sync::Arc;

use hickory_proto::rr::Name;

use super::Shared;
use super::scheduler::{AssociationKey, Job};
use super::writer::WriteError;
use crate::dnssec::keys::{self, KeyRecord, KeyState, Role, ZoneKey, ZoneState};
use crate::dnssec::sign::{self, SignStats};
use crate::dnssec::{KeyScheme, Policy};
use crate::zone::Zone;
use crate::zone::serial::next_serial;
use crate::zone::set::{unix_now, zone_file};
use crate::zone::writer::name_text;

/// Zones signed per commit when many are due at once (first start, policy change).
const SIGN_BATCH: usize = 256;

/// The keys of a signed zone, loaded.
#[derive(Debug)]
pub struct ZoneKeys {
    pub state: ZoneState,
    pub keys: Vec<ZoneKey>,
}

/// The signing keys of zones, by origin; `Err` holds why a zone's keys cannot be used.
pub(super) type KeyCache = HashMap<Name, Result<Arc<ZoneKeys>, String>>;

/// What the DNSSEC API shows of a zone.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DnssecView {
    pub zone: String,
    pub enabled: bool,
    pub signed: bool,
    /// DS records to hand to the parent (presentation format).
    pub ds: Vec<String>,
    pub keys: Vec<KeyView>,
    /// Seconds until the earliest signature expires.
    pub earliest_expiry_secs: Option<i64>,
    /// Unsigning: CDS/CDNSKEY delete published since then (signing clock), keys kept until
    /// the parent has no DS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsigning_since: Option<u64>,
    /// When no DS was first seen at any parent nameserver during unsigning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ds_gone_at: Option<u64>,
    /// The largest DS TTL the parent served during unsigning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ds_ttl: Option<u32>,
    /// When (signing clock, unix seconds) each role's active key is due to be rolled by
    /// itself: its activation plus `dnssec.zsk_lifetime_secs` (ZSK) or
    /// `dnssec.ksk_lifetime_secs` (KSK, CSK); `null`: never (a lifetime of 0).
    pub next_rollover: std::collections::BTreeMap<&'static str, Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A zone's own DNSSEC settings (`PATCH /v1/zones/{zone}`); `None` keeps the current one.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZoneDnssecSettings {
    pub enabled: Option<bool>,
    pub denial: Option<crate::dnssec::Denial>,
    pub zsk_lifetime_secs: Option<u64>,
    pub ksk_lifetime_secs: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyView {
    pub key_tag: u16,
    pub role: Role,
    pub algorithm: u8,
    pub state: &'static str,
    pub created: u64,
    /// The DNSKEY record data (public).
    pub dnskey: String,
    /// A new CSK/KSK: when its DS was first seen at every parent nameserver, and its TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ds_seen_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ds_ttl: Option<u32>,
}

impl Shared {
    /// Whether `origin` is to be signed, from its state (its own setting, else the global).
    fn dnssec_wanted(&self, origin: &Name, state: &ZoneState) -> bool {
        if self.catalog_name().is_some_and(|c| c == *origin) {
            // The catalog is for secondaries, not resolvers.
            return false;
        }
        state.enabled.unwrap_or(self.config.dnssec.enabled)
    }

    /// Whether `domain` is the apex of a zone served here that is to be signed (the
    /// diagnosis then wants a DS at the parent).
    pub(super) fn dnssec_expected(&self, domain: &str) -> bool {
        let Ok(origin) = Name::from_ascii(domain) else {
            return false;
        };
        let Some(zone) = self.zones.load().get(&origin.to_lowercase()) else {
            return false;
        };
        self.read_state(zone.origin())
            .is_ok_and(|state| self.dnssec_wanted(zone.origin(), &state))
    }

    fn read_state(&self, origin: &Name) -> Result<ZoneState, String> {
        let file = keys::state_file(&self.config.zones_dir, origin);
        match std::fs::read_to_string(&file) {
            Ok(text) => ZoneState::parse(&text, &file).map_err(|e| e.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ZoneState::default()),
            Err(e) => Err(format!("{}: cannot read: {e}", file.display())),
        }
    }

    /// The keys `origin` is signed with, `None` when it is not to be signed. The first time
    /// a zone is signed its keys are generated and their files and state written (durably,
    /// before any zone publishes them). Call with the writer lock held.
    pub(super) fn signing_keys(&self, origin: &Name) -> Result<Option<Arc<ZoneKeys>>, String> {
        let cached = self
            .dnssec_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(origin)
            .cloned();
        let loaded = match cached {
            Some(c) => c,
            None => {
                let loaded = self.load_keys(origin).map(Arc::new);
                self.dnssec_keys
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(origin.clone(), loaded.clone());
                loaded
            }
        };
        let mut errors = self.dnssec_errors.lock().unwrap_or_else(|p| p.into_inner());
        match &loaded {
            Err(e) => {
                errors.insert(name_text(origin), e.clone());
            }
            Ok(_) => {
                errors.remove(&name_text(origin));
            }
        }
        drop(errors);
        let keys = loaded?;
        if !self.dnssec_wanted(origin, &keys.state) {
            // Unsigning keeps the zone signed (with CDS/CDNSKEY delete) until the parent has
            // no DS left: a zone served unsigned under a DS is bogus.
            let unsigning = keys.state.unsigning_since.is_some()
                && keys.keys.iter().any(|k| k.record.state == KeyState::Active);
            return Ok(unsigning.then_some(keys));
        }
        if keys.keys.iter().any(|k| k.record.state == KeyState::Active) {
            // An algorithm rollover (RFC 6781 §4.1.4) is not supported: the zone keeps the
            // algorithm of its keys, and says why it does not follow the configuration.
            let wanted = self.config.dnssec.algorithm;
            if let Some(other) = keys
                .keys
                .iter()
                .find(|k| k.record.state == KeyState::Active && k.record.algorithm != wanted)
            {
                let message = format!(
                    "dnssec.algorithm is {} but the zone is signed with algorithm {}: algorithm rollovers are not supported; the zone keeps its algorithm {} keys (to change the algorithm, unsign the zone, remove the DS at the parent, and sign it again)",
                    wanted.number(),
                    other.record.algorithm.number(),
                    other.record.algorithm.number()
                );
                let mut errors = self.dnssec_errors.lock().unwrap_or_else(|p| p.into_inner());
                if errors.insert(name_text(origin), message.clone()).is_none() {
                    tracing::error!(zone = %name_text(origin), "{message}");
                }
            }
            return Ok(Some(keys));
        }
        // First signing: new keys, active at once (no parent has a DS for them yet).
        let generated = self.generate_keys(origin, &keys.state)?;
        let generated = Arc::new(generated);
        self.dnssec_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(origin.clone(), Ok(generated.clone()));
        Ok(Some(generated))
    }

    fn load_keys(&self, origin: &Name) -> Result<ZoneKeys, String> {
        let state = self.read_state(origin)?;
        let mut loaded = Vec::new();
        for record in state.live_keys() {
            loaded.push(
                keys::load(&self.config.keys_dir, origin, record).map_err(|e| e.to_string())?,
            );
        }
        Ok(ZoneKeys {
            state,
            keys: loaded,
        })
    }

    fn generate_keys(&self, origin: &Name, state: &ZoneState) -> Result<ZoneKeys, String> {
        let policy = &self.config.dnssec;
        let now = unix_now();
        let roles: &[Role] = match policy.keys {
            KeyScheme::Csk => &[Role::Csk],
            KeyScheme::KskZsk => &[Role::Ksk, Role::Zsk],
        };
        let mut state = state.clone();
        let mut made = Vec::new();
        let mut files = Vec::new();
        let dir = keys::key_dir(&self.config.keys_dir, origin);
        for &role in roles {
            let (mut key, pem) =
                keys::generate(origin, policy.algorithm, role, now).map_err(|e| e.to_string())?;
            key.record.state = KeyState::Active;
            key.record.active_since = Some(now);
            files.push(crate::durable::FileChange::write(
                &keys::key_file(&self.config.keys_dir, origin, &key.record.id),
                pem.into_bytes(),
                crate::durable::PRIVATE_FILE_MODE,
            ));
            state.keys.push(key.record.clone());
            made.push(key);
        }
        let state_file = keys::state_file(&self.config.zones_dir, origin);
        files.push(crate::durable::FileChange::write(
            &state_file,
            state.to_yaml().into_bytes(),
            crate::durable::PUBLIC_FILE_MODE,
        ));
        let create = || -> std::io::Result<()> {
            crate::durable::create_private_dir(&self.config.keys_dir)?;
            crate::durable::create_private_dir(&self.config.keys_dir.join("dnssec"))?;
            crate::durable::create_private_dir(&dir)?;
            if let Some(parent) = state_file.parent() {
                crate::durable::create_dir_with_mode(parent, crate::durable::PUBLIC_DIR_MODE)?;
            }
            Ok(())
        };
        create().map_err(|e| format!("{}: {e}", dir.display()))?;
        crate::durable::commit(&files).map_err(|e| e.to_string())?;
        for k in &made {
            tracing::info!(zone = %name_text(origin), key_tag = k.record.key_tag, role = ?k.record.role, algorithm = k.record.algorithm.number(), "DNSSEC key generated");
        }
        self.metrics
            .dnssec_key_events
            .with_label_values(&["generated"])
            .inc_by(made.len() as u64);
        // Keys of the state file kept before (retired ones) stay loaded with the new ones.
        let mut keys = self.load_keys(origin).unwrap_or(ZoneKeys {
            state: state.clone(),
            keys: Vec::new(),
        });
        if keys.keys.is_empty() {
            keys.keys = made;
        }
        Ok(keys)
    }

    /// Sets a zone's own DNSSEC settings (signed or not, NSEC or NSEC3, key lifetimes;
    /// `None` keeps the current one) and signs, re-chains or unsigns it accordingly; the
    /// automatic rollover is planned again from the new lifetimes.
    pub async fn set_zone_dnssec(
        &self,
        origin: &Name,
        settings: ZoneDnssecSettings,
    ) -> Result<Arc<Zone>, WriteError> {
        let ZoneDnssecSettings {
            enabled,
            denial,
            zsk_lifetime_secs,
            ksk_lifetime_secs,
        } = settings;
        for (key, secs) in [
            ("dnssec_zsk_lifetime_secs", zsk_lifetime_secs),
            ("dnssec_ksk_lifetime_secs", ksk_lifetime_secs),
        ] {
            if let Some(secs) = secs {
                crate::dnssec::check_key_lifetime(key, secs).map_err(|(key, why)| {
                    WriteError::Invalid(crate::zone::edit::EditError {
                        operation: None,
                        message: format!("{key}: {why}"),
                    })
                })?;
            }
        }
        let _writer = self.writer.lock().await;
        let current = self.zones.load_full();
        let Some(zone) = current.get(origin) else {
            return Err(WriteError::NotFound(origin.to_string()));
        };
        if self.catalog_name().is_some_and(|c| c == *origin) {
            return Err(WriteError::Conflict(
                "the catalog zone is not signed: it is for secondaries, not resolvers".into(),
            ));
        }
        let mut state = self.read_state(origin).map_err(|e| WriteError::Io {
            file: keys::state_file(&self.config.zones_dir, origin)
                .display()
                .to_string(),
            message: e,
        })?;
        if enabled.is_some() {
            state.enabled = enabled;
        }
        if denial.is_some() {
            state.denial = denial;
        }
        if zsk_lifetime_secs.is_some() {
            state.zsk_lifetime_secs = zsk_lifetime_secs;
        }
        if ksk_lifetime_secs.is_some() {
            state.ksk_lifetime_secs = ksk_lifetime_secs;
        }
        let enabled = self.dnssec_wanted(origin, &state);
        let denial = state.denial.unwrap_or(self.config.dnssec.denial);
        let was_unsigning = state.unsigning_since.is_some();
        if enabled {
            state.unsigning_since = None;
            state.ds_gone_at = None;
            state.ds_ttl = None;
        } else if zone.is_signed() && state.live_keys().next().is_some() && !was_unsigning {
            state.unsigning_since = Some(self.dnssec_now());
        }
        let unsigning = state.unsigning_since.is_some();
        let state_file = keys::state_file(&self.config.zones_dir, origin);
        if let Some(parent) = state_file.parent() {
            let _ = crate::durable::create_dir_with_mode(parent, crate::durable::PUBLIC_DIR_MODE);
        }
        super::writer::commit_files(vec![crate::durable::FileChange::write(
            &state_file,
            state.to_yaml().into_bytes(),
            crate::durable::PUBLIC_FILE_MODE,
        )])
        .await?;
        self.reload_keys(origin);
        self.auto_roll_retry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(origin);
        // New lifetimes move the automatic rollover either way.
        let key = AssociationKey::zone(&name_text(origin));
        match self.roll_deadline(&zone) {
            Some(at) => self.scheduler.schedule(at, key, Job::RollKeys),
            None => self.scheduler.unschedule(&key, Job::RollKeys),
        }
        self.note_key_states(origin);
        if zone.is_signed() == enabled
            && was_unsigning == unsigning
            && (!enabled || denial_of(&zone) == Some(denial))
        {
            return Ok(zone);
        }
        if unsigning && !was_unsigning {
            tracing::info!(zone = %name_text(origin), "unsigning: CDS/CDNSKEY delete published; the zone stays signed until no parent nameserver serves a DS and the DS TTL has passed");
            self.metrics
                .dnssec_key_events
                .with_label_values(&["unsigning"])
                .inc();
        }
        let serial = next_serial(self.config.zone_defaults.serial, zone.serial(), unix_now());
        let next = zone.with_serial(serial).map_err(WriteError::Invalid)?;
        let file = zone_file(&self.config.zones_dir, origin);
        let zones = self.journal_zones(vec![(Arc::new(next), file)]).await?;
        self.store_journalled(zones.clone()).await?;
        tracing::info!(zone = %name_text(origin), signed = enabled, denial = ?denial, "zone DNSSEC setting changed");
        if unsigning && let Some(z) = self.zones.load().get(origin) {
            self.note_expiry(&z);
        }
        Ok(zones.into_iter().next().map(|(z, _)| z).unwrap_or(zone))
    }

    /// The clock of signing: the test clock ([`Shared::clock_now`]).
    pub fn dnssec_now(&self) -> u64 {
        self.clock_now()
    }

    /// The re-signing and key-rollover jobs of every signed zone (start, reload, clock moves).
    pub(super) fn resign_jobs(&self) -> Vec<(tokio::time::Instant, AssociationKey, Job)> {
        let mut jobs = Vec::new();
        for z in self.zones.load().zones() {
            let key = AssociationKey::zone(&name_text(z.origin()));
            if let Some(at) = self.resign_deadline(&z) {
                jobs.push((at, key.clone(), Job::Resign));
            }
            if let Some(at) = self.roll_deadline(&z) {
                jobs.push((at, key, Job::RollKeys));
            }
        }
        jobs
    }

    /// Starts a key rollover. A ZSK is rolled by pre-publication (RFC 6781 §4.1.1.1): the new
    /// key is published now, signs after the DNSKEY TTL and `propagation_secs`, and the old
    /// one leaves the DNSKEY rrset after the zone's largest TTL more. A CSK or KSK is rolled
    /// by double DS (RFC 6781 §4.1.2) driven by CDS (RFC 7344): the new key is published and
    /// the CDS/CDNSKEY name both keys; it takes over (and the old one is retired) only once
    /// the diagnosis has seen its DS at every nameserver of the parent zone, asked directly,
    /// and the DS TTL has passed since. Refused: a rollover while another (or an unsigning)
    /// is under way, and a CSK/KSK rollover when the parent's servers cannot be asked (it
    /// could never finish).
    pub async fn start_rollover(
        &self,
        origin: &Name,
        role: Role,
    ) -> Result<DnssecView, WriteError> {
        if role.is_sep() {
            let why = match self.observe_parent(origin).await {
                None => Some("no resolver for the diagnosis (diagnosis.resolver)".to_string()),
                Some(p) if p.error.is_some() => p.error,
                Some(p) if p.servers.is_empty() => {
                    Some("the parent zone lists no nameserver".to_string())
                }
                Some(_) => None,
            };
            if let Some(why) = why {
                return Err(WriteError::Conflict(format!(
                    "a {} rollover needs the new DS seen at every parent nameserver before the old key goes, and the parent cannot be asked: {why}",
                    role_name(role)
                )));
            }
        }
        let _writer = self.writer.lock().await;
        let Some(zone) = self.zones.load().get(origin) else {
            return Err(WriteError::NotFound(origin.to_string()));
        };
        let keys = self
            .signing_keys(origin)
            .map_err(|e| WriteError::Conflict(format!("the zone's keys cannot be used: {e}")))?
            .ok_or_else(|| {
                WriteError::Conflict(format!("zone {} is not signed", name_text(origin)))
            })?;
        if keys.state.unsigning_since.is_some() {
            return Err(WriteError::Conflict(
                "the zone is being unsigned: no rollover".into(),
            ));
        }
        let Some(algorithm) = keys
            .keys
            .iter()
            .find(|k| k.record.role == role && k.record.state == KeyState::Active)
            .map(|k| k.record.algorithm)
        else {
            return Err(WriteError::Conflict(match role {
                Role::Zsk => "the zone has no ZSK (it is signed with a CSK): set dnssec.keys to ksk-zsk for ZSK rollovers".into(),
                Role::Csk => "the zone has no CSK (it is signed with a KSK and a ZSK): roll its ksk or zsk".into(),
                Role::Ksk => "the zone has no KSK (it is signed with a CSK): roll its csk".into(),
            }));
        };
        if keys
            .keys
            .iter()
            .any(|k| matches!(k.record.state, KeyState::Published | KeyState::Retired))
        {
            return Err(WriteError::Conflict(
                "a rollover is already under way for this zone".into(),
            ));
        }
        let now = self.dnssec_now();
        // The new key keeps the zone's algorithm: no algorithm rollover.
        let (key, pem) = keys::generate(origin, algorithm, role, now)
            .map_err(|e| WriteError::Conflict(e.to_string()))?;
        let mut state = keys.state.clone();
        state.keys.push(key.record.clone());
        let files = vec![
            crate::durable::FileChange::write(
                &keys::key_file(&self.config.keys_dir, origin, &key.record.id),
                pem.into_bytes(),
                crate::durable::PRIVATE_FILE_MODE,
            ),
            crate::durable::FileChange::write(
                &keys::state_file(&self.config.zones_dir, origin),
                state.to_yaml().into_bytes(),
                crate::durable::PUBLIC_FILE_MODE,
            ),
        ];
        super::writer::commit_files(files).await?;
        self.metrics
            .dnssec_key_events
            .with_label_values(&["generated"])
            .inc();
        if role.is_sep() {
            tracing::info!(zone = %name_text(origin), key_tag = key.record.key_tag, role = role_name(role), "double-DS rollover started: new key published, CDS/CDNSKEY name it; the old key goes once its DS is seen at every parent nameserver");
        } else {
            tracing::info!(zone = %name_text(origin), key_tag = key.record.key_tag, "ZSK rollover started: new key published");
        }
        self.reload_keys(origin);
        self.bring_to_policy(vec![zone]).await;
        self.dnssec_view(origin)
            .ok_or_else(|| WriteError::NotFound(origin.to_string()))
    }

    /// Forgets the cached keys of a zone and loads them again from its files.
    fn reload_keys(&self, origin: &Name) {
        self.dnssec_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(origin);
        let _ = self.signing_keys(origin);
    }

    /// When the zone's rollover (or unsigning) has its next step, if one is under way; while
    /// a step waits for the parent's DS, at the next look at the parent.
    fn roll_deadline(&self, zone: &Zone) -> Option<tokio::time::Instant> {
        let keys = self
            .dnssec_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(zone.origin())
            .cloned()?
            .ok()?;
        let now = self.dnssec_now();
        let step = self.roll_step_due_at(zone, &keys.state);
        let look = waits_for_parent(&keys.state)
            .then(|| now + self.config.dnssec.parent_check_secs.max(1));
        let automatic = self
            .automatic_rollover_due(zone.origin(), &keys.state)
            .map(|(at, _)| at);
        let due = [step, look, automatic].into_iter().flatten().min()?;
        let wait = due.saturating_sub(now);
        Some(tokio::time::Instant::now() + std::time::Duration::from_secs(wait))
    }

    /// A key's lifetime by its role, from the zone's own setting or the global one; 0: never.
    fn key_lifetime(&self, state: &ZoneState, role: Role) -> u64 {
        let policy = &self.config.dnssec;
        match role {
            Role::Zsk => state.zsk_lifetime_secs.unwrap_or(policy.zsk_lifetime_secs),
            Role::Ksk | Role::Csk => state.ksk_lifetime_secs.unwrap_or(policy.ksk_lifetime_secs),
        }
    }

    /// When (signing clock) each active key of a signed zone is due to be rolled: its
    /// activation plus its role's lifetime, less the zone's [`rollover_spread`]; `None` for
    /// a lifetime of 0.
    fn lifetime_ends(&self, origin: &Name, state: &ZoneState) -> Vec<(Role, Option<u64>)> {
        if !self.dnssec_wanted(origin, state) || state.unsigning_since.is_some() {
            return Vec::new();
        }
        state
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Active)
            .map(|k| {
                let lifetime = self.key_lifetime(state, k.role);
                let end = (lifetime > 0).then(|| {
                    k.active_since
                        .unwrap_or(k.created)
                        .saturating_add(lifetime)
                        .saturating_sub(rollover_spread(origin, k.role, lifetime))
                });
                (k.role, end)
            })
            .collect()
    }

    /// The next automatic rollover to start, and when: the active key whose lifetime ends
    /// first, while no rollover (nor unsigning) is under way, and not before the retry time
    /// of one that could not start.
    fn automatic_rollover_due(&self, origin: &Name, state: &ZoneState) -> Option<(u64, Role)> {
        if state
            .keys
            .iter()
            .any(|k| matches!(k.state, KeyState::Published | KeyState::Retired))
        {
            return None;
        }
        let (role, at) = self
            .lifetime_ends(origin, state)
            .into_iter()
            .filter_map(|(role, end)| Some((role, end?)))
            .min_by_key(|(_, at)| *at)?;
        let retry = self
            .auto_roll_retry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(origin)
            .copied()
            .unwrap_or(0);
        Some((at.max(retry), role))
    }

    /// Starts the rollover of a key whose lifetime has passed, by the same path as the API.
    /// One that cannot start (a CSK/KSK whose parent cannot be asked) is tried again after
    /// `dnssec.parent_check_secs`.
    async fn roll_automatically(&self, origin: &Name, role: Role) {
        let zone = name_text(origin);
        match self.start_rollover(origin, role).await {
            Ok(_) => {
                self.auto_roll_retry
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(origin);
                self.metrics
                    .dnssec_key_events
                    .with_label_values(&["rollover_automatic"])
                    .inc();
                tracing::info!(zone = %zone, role = role_name(role), event = "rollover_automatic", "automatic DNSSEC key rollover started: the active key's lifetime has passed");
            }
            Err(e) => {
                let retry = self.config.dnssec.parent_check_secs.max(60);
                self.auto_roll_retry
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(origin.clone(), self.dnssec_now() + retry);
                self.metrics
                    .dnssec_key_events
                    .with_label_values(&["rollover_automatic_failed"])
                    .inc();
                tracing::warn!(zone = %zone, role = role_name(role), event = "rollover_automatic_failed", error = %e, retry_secs = retry, "automatic DNSSEC key rollover not started");
                if let Some(z) = self.zones.load().get(origin)
                    && let Some(at) = self.roll_deadline(&z)
                {
                    self.scheduler
                        .schedule(at, AssociationKey::zone(&zone), Job::RollKeys);
                }
            }
        }
    }

    /// When (signing clock) a key of `state` may take its next step: a published key may
    /// sign once every cache has its DNSKEY (a CSK/KSK: and the parent's DS for it), a
    /// retired key may go once no cache holds a signature it made; an unsigning zone may
    /// drop its keys once no cache holds the parent's DS.
    fn roll_step_due_at(&self, zone: &Zone, state: &ZoneState) -> Option<u64> {
        let policy = &self.config.dnssec;
        let unsigned_at = state.ds_gone_at.map(|gone| {
            gone + u64::from(state.ds_ttl.unwrap_or(UNKNOWN_DS_TTL)) + policy.propagation_secs
        });
        state
            .keys
            .iter()
            .filter_map(|k| self.step_due_at(zone, k))
            .chain(unsigned_at)
            .min()
    }

    fn step_due_at(&self, zone: &Zone, k: &KeyRecord) -> Option<u64> {
        let policy = &self.config.dnssec;
        match k.state {
            KeyState::Published if k.role.is_sep() => {
                // Double DS: the parent's DS for the new key must have been seen at every
                // parent nameserver, and every cache must hold it (its TTL).
                let seen = k.ds_seen_at?;
                Some(
                    (k.created + u64::from(policy.dnskey_ttl) + policy.propagation_secs).max(
                        seen + u64::from(k.ds_ttl.unwrap_or(UNKNOWN_DS_TTL))
                            + policy.propagation_secs,
                    ),
                )
            }
            KeyState::Published => {
                Some(k.created + u64::from(policy.dnskey_ttl) + policy.propagation_secs)
            }
            KeyState::Retired => {
                let max_ttl = zone.view().user_records().map(|r| r.ttl).max().unwrap_or(0);
                Some(
                    k.retired_since.unwrap_or(k.created)
                        + u64::from(max_ttl.max(policy.dnskey_ttl))
                        + policy.propagation_secs,
                )
            }
            _ => None,
        }
    }

    /// The DS set of `origin` at every nameserver of its parent, asked by the diagnosis's
    /// prober; `None` when no resolver is known.
    async fn observe_parent(&self, origin: &Name) -> Option<crate::diagnose::dnssec::ParentDs> {
        let prober = crate::diagnose::prober(&self.config.diagnosis)?;
        let deadline = tokio::time::Instant::now() + prober.budget;
        Some(
            crate::diagnose::dnssec::parent_ds(
                &prober,
                origin,
                &|addr| self.semaphore_for(addr),
                deadline,
            )
            .await,
        )
    }

    /// The scheduler's job: the rollover (or unsigning) steps that are due. A step that
    /// waits for the parent asks it first, outside the writer lock; what is seen is kept in
    /// the state file, and a step that retires a key or drops the keys is taken only when
    /// this very look confirms it.
    pub(super) async fn roll_due(&self, zone: &str) {
        let Ok(origin) = Name::from_ascii(zone) else {
            return;
        };
        let cached = self
            .dnssec_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&origin)
            .cloned();
        // A key whose lifetime has passed, with no rollover under way: start one.
        if let Some(Ok(k)) = &cached
            && let Some((at, role)) = self.automatic_rollover_due(&origin, &k.state)
            && at <= self.dnssec_now()
        {
            self.roll_automatically(&origin, role).await;
            return;
        }
        let parent = match cached {
            Some(Ok(k)) if waits_for_parent(&k.state) => self.observe_parent(&origin).await,
            _ => None,
        };
        let _writer = self.writer.lock().await;
        let Some(current) = self.zones.load().get(&origin) else {
            return;
        };
        let Ok(Some(keys)) = self.signing_keys(&origin) else {
            return;
        };
        let now = self.dnssec_now();
        let mut state = keys.state.clone();
        let mut files = Vec::new();
        let mut events: Vec<(&str, u16)> = Vec::new();
        // What the parent serves now, for each key that waits for it.
        let confirmed: Vec<bool> = state
            .keys
            .iter()
            .map(|k| {
                let Some(parent) = &parent else { return false };
                if k.state != KeyState::Published || !k.role.is_sep() {
                    return false;
                }
                let Some(zk) = keys.keys.iter().find(|z| z.record.id == k.id) else {
                    return false;
                };
                parent
                    .at_every_server(&origin, |ds| {
                        ds.covers(&origin, &zk.dnskey).unwrap_or(false)
                    })
                    .is_some()
            })
            .collect();
        if let Some(parent) = &parent {
            note_parent(&origin, &keys, &mut state, parent, now, &mut events);
        }
        let due = |k: &KeyRecord| self.step_due_at(&current, k).is_some_and(|at| at <= now);
        if state.unsigning_since.is_some() {
            let gone_long_enough = self
                .roll_step_due_at(
                    &current,
                    &ZoneState {
                        keys: vec![],
                        ..state.clone()
                    },
                )
                .is_some_and(|at| at <= now);
            if gone_long_enough && parent.as_ref().is_some_and(|p| p.none_anywhere(&origin)) {
                for k in state
                    .keys
                    .iter_mut()
                    .filter(|k| k.state != KeyState::Removed)
                {
                    k.state = KeyState::Removed;
                    files.push(crate::durable::FileChange::remove(&keys::key_file(
                        &self.config.keys_dir,
                        &origin,
                        &k.id,
                    )));
                    events.push(("removed", k.key_tag));
                }
                state.unsigning_since = None;
                state.ds_gone_at = None;
                state.ds_ttl = None;
                events.push(("unsigned", 0));
            }
        } else {
            // The roles whose new key takes over now.
            let mut activate: Vec<Role> = Vec::new();
            for (k, confirmed) in state.keys.iter().zip(&confirmed) {
                if k.state == KeyState::Published && due(k) && (!k.role.is_sep() || *confirmed) {
                    activate.push(k.role);
                }
            }
            let remove: Vec<bool> = state
                .keys
                .iter()
                .map(|k| k.state == KeyState::Retired && due(k))
                .collect();
            for (k, remove) in state.keys.iter_mut().zip(remove) {
                match k.state {
                    KeyState::Active if activate.contains(&k.role) => {
                        k.state = KeyState::Retired;
                        k.retired_since = Some(now);
                        events.push(("retired", k.key_tag));
                    }
                    KeyState::Published if activate.contains(&k.role) => {
                        k.state = KeyState::Active;
                        k.active_since = Some(now);
                        events.push(("activated", k.key_tag));
                    }
                    KeyState::Retired if remove => {
                        k.state = KeyState::Removed;
                        files.push(crate::durable::FileChange::remove(&keys::key_file(
                            &self.config.keys_dir,
                            &origin,
                            &k.id,
                        )));
                        events.push(("removed", k.key_tag));
                    }
                    _ => {}
                }
            }
        }
        let key = AssociationKey::zone(&name_text(&origin));
        if state == keys.state {
            if let Some(at) = self.roll_deadline(&current) {
                self.scheduler.schedule(at, key, Job::RollKeys);
            }
            return;
        }
        // The state first, then the removed key files: a crash in between leaves a key file
        // that no state names as live, never a live key without its file.
        let mut changes = vec![crate::durable::FileChange::write(
            &keys::state_file(&self.config.zones_dir, &origin),
            state.to_yaml().into_bytes(),
            crate::durable::PUBLIC_FILE_MODE,
        )];
        changes.extend(files);
        if let Err(e) = super::writer::commit_files(changes).await {
            tracing::error!(zone = %zone, error = %e, "rollover step not taken");
            return;
        }
        for (event, tag) in events {
            self.metrics
                .dnssec_key_events
                .with_label_values(&[event])
                .inc();
            tracing::info!(zone = %zone, key_tag = tag, event, "DNSSEC key rollover step");
        }
        self.reload_keys(&origin);
        self.bring_to_policy(vec![current]).await;
        if let Some(zone) = self.zones.load().get(&origin) {
            match self.roll_deadline(&zone) {
                Some(at) => self.scheduler.schedule(at, key, Job::RollKeys),
                None => self.scheduler.unschedule(&key, Job::RollKeys),
            }
        }
    }

    /// When a signed zone's earliest signature enters the refresh window.
    fn resign_deadline(&self, zone: &Zone) -> Option<tokio::time::Instant> {
        let expiry = sign::earliest_expiry(zone)?;
        let due = expiry.saturating_sub(self.config.dnssec.refresh_secs);
        let wait = due.saturating_sub(self.dnssec_now());
        Some(tokio::time::Instant::now() + std::time::Duration::from_secs(wait))
    }

    /// The scheduler's job: re-signs a zone whose signatures entered the refresh window.
    pub(super) async fn resign_due(&self, zone: &str) {
        let Ok(origin) = Name::from_ascii(zone) else {
            return;
        };
        let _writer = self.writer.lock().await;
        let Some(current) = self.zones.load().get(&origin) else {
            return;
        };
        self.bring_to_policy(vec![current]).await;
    }

    /// Brings every zone to its DNSSEC policy: signs zones that must be signed and are not
    /// (or whose signatures are due for refresh or whose keys changed), unsigns the others.
    /// Zones whose stored signatures are current are left alone, so a restart signs nothing.
    /// Call with the writer lock held.
    pub(super) async fn sign_zones_locked(&self) {
        let zones = self.zones.load().zones();
        self.preload_keys(&zones);
        self.bring_to_policy(zones).await;
    }

    /// Loads the keys (state file, key files) of every zone of `zones` not loaded yet, on
    /// every core: at start, 10,000 zones' keys read one after the other were a large part
    /// of a restart. What is loaded (or why it cannot be) is cached as
    /// [`Shared::signing_keys`] would cache it.
    fn preload_keys(&self, zones: &[Arc<Zone>]) {
        let missing: Vec<Name> = {
            let cache = self.dnssec_keys.lock().unwrap_or_else(|p| p.into_inner());
            zones
                .iter()
                .map(|z| z.origin().clone())
                .filter(|o| !cache.contains_key(o))
                .filter(|o| self.catalog_name().is_none_or(|c| c != *o))
                .filter(|o| keys::state_file(&self.config.zones_dir, o).exists())
                .collect()
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(missing.len().div_ceil(64))
            .max(1);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let loaded: Vec<(Name, Result<Arc<ZoneKeys>, String>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(origin) = missing.get(i) else {
                                return mine;
                            };
                            mine.push((origin.clone(), self.load_keys(origin).map(Arc::new)));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        let mut cache = self.dnssec_keys.lock().unwrap_or_else(|p| p.into_inner());
        for (origin, keys) in loaded {
            cache.entry(origin).or_insert(keys);
        }
    }

    async fn bring_to_policy(&self, zones: Vec<Arc<Zone>>) {
        let now = self.dnssec_now();
        let refresh = self.config.dnssec.refresh_secs;
        let mut due = Vec::new();
        for zone in zones {
            let keys = match self.signing_keys(zone.origin()) {
                Ok(k) => k,
                Err(e) => {
                    tracing::error!(zone = %name_text(zone.origin()), error = %e, "DNSSEC keys unusable: the zone keeps its last signed version and changes to it are refused");
                    continue;
                }
            };
            let needs = match &keys {
                None => zone.is_signed(),
                Some(keys) => {
                    !zone.is_signed()
                        || sign::earliest_expiry(&zone).is_none_or(|e| e <= now + refresh)
                        || !publishes_keys(&zone, keys)
                        || !signed_by_active_keys(&zone, keys)
                        || denial_of(&zone)
                            != Some(keys.state.denial.unwrap_or(self.config.dnssec.denial))
                        || publishes_cds_delete(&zone) != keys.state.unsigning_since.is_some()
                }
            };
            self.note_expiry(&zone);
            if needs {
                let serial =
                    next_serial(self.config.zone_defaults.serial, zone.serial(), unix_now());
                match zone.with_serial(serial) {
                    Ok(next) => due.push((
                        Arc::new(next),
                        zone_file(&self.config.zones_dir, zone.origin()),
                    )),
                    Err(e) => {
                        tracing::error!(zone = %name_text(zone.origin()), error = %e.message, "zone not signed")
                    }
                }
            }
        }
        if due.is_empty() {
            return;
        }
        let count = due.len();
        // Committed in batches (10,000 zones signed at a first start are not 10,000
        // commits); a batch that fails is retried zone by zone, so that a zone that fails
        // does not hold back the others.
        let mut due = due.into_iter().peekable();
        while due.peek().is_some() {
            let batch: Vec<_> = due.by_ref().take(SIGN_BATCH).collect();
            let result = async {
                let zones = self.journal_zones(batch.clone()).await?;
                self.store_journalled(zones).await
            }
            .await;
            if result.is_ok() {
                continue;
            }
            for item in batch {
                let origin = item.0.origin().clone();
                let result = async {
                    let zones = self.journal_zones(vec![item]).await?;
                    self.store_journalled(zones).await
                }
                .await;
                if let Err(e) = result {
                    tracing::error!(zone = %name_text(&origin), error = %e, "zone not signed");
                }
            }
        }
        tracing::info!(
            zones = count,
            "zones signed or unsigned to follow the DNSSEC policy"
        );
    }

    /// Runs [`Shared::sign_zones_locked`] under the writer lock.
    pub async fn sign_zones(&self) {
        let _writer = self.writer.lock().await;
        self.sign_zones_locked().await;
    }

    /// The start's DNSSEC pass before the first answer: every zone is brought to its policy
    /// (signed, re-signed, re-chained or unsigned) except those whose stored version already
    /// fits the configured policy on its face: signed (from stored signatures, checked
    /// against their zone file's text when loaded), not due for refresh, the configured
    /// denial, no unsigning under way. Those are served as stored and left to
    /// [`Shared::finish_start_pass`] (what is returned), which reads their keys and state:
    /// reading 10,000 zones' keys and state files here made a restart several times slower
    /// than an unsigned start. A zone whose own settings differ from the configuration is
    /// brought to them here, as before.
    ///
    /// A zone that is not signed, has no state file and is not to be signed by the
    /// configuration (DNSSEC off, or the catalog) has nothing to be brought to: it is not
    /// looked at at all. Which zones have a state file is read from one listing of the
    /// state folder: with 100,000 unsigned zones, a look-up of each zone's state and keys,
    /// its metrics and its jobs were a fifth of a start.
    pub async fn sign_zones_at_start(&self) -> Vec<Name> {
        let _writer = self.writer.lock().await;
        let now = self.dnssec_now();
        let policy = &self.config.dnssec;
        let catalog = self.catalog_name();
        // Listed when an unsigned zone first needs it: a restart of signed zones only
        // (10,000 state files) does not list the folder before its first answer.
        let mut with_state: Option<Option<std::collections::HashSet<String>>> = None;
        let mut later = Vec::new();
        let mut first = Vec::new();
        for z in self.zones.load().zones() {
            let is_catalog = catalog.as_ref().is_some_and(|c| c == z.origin());
            if !z.is_signed() && (!policy.enabled || is_catalog) {
                let has_state = with_state
                    .get_or_insert_with(|| self.zones_with_state_files())
                    .as_ref()
                    .is_none_or(|names| {
                        !names.is_empty() && names.contains(&keys::state_file_name(z.origin()))
                    });
                if !has_state {
                    continue;
                }
            }
            let fits_stored = policy.enabled
                && z.is_signed()
                && !is_catalog
                && z.earliest_expiry()
                    .is_some_and(|e| e > now + policy.refresh_secs)
                && denial_of(&z) == Some(policy.denial)
                && !publishes_cds_delete(&z);
            if fits_stored {
                later.push(z);
            } else {
                first.push(z);
            }
        }
        if !first.is_empty() {
            self.preload_keys(&first);
            self.bring_to_policy(first).await;
        }
        later.iter().map(|z| z.origin().clone()).collect()
    }

    /// The names of the state files in the state folder (one listing), `None` when it
    /// cannot be listed: then every zone is taken to have one, as a look-up per zone would
    /// find out.
    fn zones_with_state_files(&self) -> Option<std::collections::HashSet<String>> {
        let dir = keys::state_dir(&self.config.zones_dir);
        let listing = match std::fs::read_dir(&dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Some(Default::default());
            }
            Err(_) => return None,
        };
        let mut names = std::collections::HashSet::new();
        for entry in listing {
            let name = entry.ok()?.file_name();
            // A name that is not UTF-8 is no zone's state file.
            if let Ok(name) = name.into_string() {
                names.insert(name);
            }
        }
        Some(names)
    }

    /// The rest of the start's DNSSEC pass, after the first answer, over the zones
    /// [`Shared::sign_zones_at_start`] left (their current versions): their keys and state
    /// are loaded, their re-signing and rollover jobs planned, and any whose keys, denial or
    /// settings changed while stopped is signed again — as at any change, the stored version
    /// is served until the new one is committed. When it is done is logged and kept in
    /// `mailzone_dnssec_start_pass_seconds` (from `started`).
    pub async fn finish_start_pass(
        self: Arc<Self>,
        origins: Vec<Name>,
        started: std::time::Instant,
    ) {
        let count = origins.len();
        if !origins.is_empty() {
            let _writer = self.writer.lock().await;
            let zones: Vec<Arc<Zone>> = {
                let set = self.zones.load();
                origins.iter().filter_map(|o| set.get(o)).collect()
            };
            // Key and state files are read on every core, off the runtime.
            let this = self.clone();
            let preload = zones.clone();
            let _ = tokio::task::spawn_blocking(move || this.preload_keys(&preload)).await;
            self.bring_to_policy(zones).await;
        }
        let secs = started.elapsed().as_secs_f64();
        self.metrics.dnssec_start_pass.set(secs);
        tracing::info!(
            zones = count,
            secs,
            "start-up DNSSEC policy pass done over the zones served from their stored signatures"
        );
        self.start_pass.send_replace(true);
    }

    /// Waits until the start's DNSSEC pass is done (tests start from there).
    pub async fn start_pass_done(&self) {
        let mut done = self.start_pass.subscribe();
        let _ = done.wait_for(|d| *d).await;
    }

    /// Keys loaded for a new version of each zone of `zones`: `Err` refuses the change.
    pub(super) fn keys_for(
        &self,
        zones: &[(Arc<Zone>, std::path::PathBuf)],
    ) -> Result<Vec<Option<Arc<ZoneKeys>>>, WriteError> {
        zones
            .iter()
            .map(|(z, _)| {
                self.signing_keys(z.origin()).map_err(|e| {
                    WriteError::Conflict(format!(
                        "zone {} is signed with DNSSEC and its keys cannot be used ({e}); it keeps serving its last signed version",
                        name_text(z.origin())
                    ))
                })
            })
            .collect()
    }

    /// Records the zone's signature figures in the metrics and plans its re-signing.
    pub(super) fn note_expiry(&self, zone: &Zone) {
        let label = name_text(zone.origin());
        let key = AssociationKey::zone(&label);
        match sign::earliest_expiry(zone) {
            Some(e) => {
                self.metrics
                    .dnssec_expiry
                    .with_label_values(&[&label])
                    .set(e as i64 - self.dnssec_now() as i64);
                if let Some(at) = self.resign_deadline(zone) {
                    self.scheduler.schedule(at, key.clone(), Job::Resign);
                }
                // The earlier deadline wins: changes to a zone must not push back a look at
                // the parent (a job that finds nothing due plans the next one itself).
                match self.roll_deadline(zone) {
                    Some(at) => self.scheduler.schedule_by(at, key, Job::RollKeys),
                    None => self.scheduler.unschedule(&key, Job::RollKeys),
                }
            }
            None => {
                // Not signed: nothing to re-sign, no key to roll.
                let _ = self.metrics.dnssec_expiry.remove_label_values(&[&label]);
                self.scheduler.unschedule(&key, Job::Resign);
                self.scheduler.unschedule(&key, Job::RollKeys);
            }
        }
        self.note_key_states(zone.origin());
    }

    /// The key-state gauge of a zone: one series per live key's role and state.
    fn note_key_states(&self, origin: &Name) {
        let label = name_text(origin);
        for role in ["csk", "ksk", "zsk"] {
            for state in ["published", "active", "retired"] {
                let _ = self
                    .metrics
                    .dnssec_keys
                    .remove_label_values(&[&label, role, state]);
            }
            let _ = self
                .metrics
                .dnssec_next_rollover
                .remove_label_values(&[&label, role]);
        }
        let keys = self
            .dnssec_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(origin)
            .cloned();
        let Some(Ok(keys)) = keys else {
            return;
        };
        if !self.dnssec_wanted(origin, &keys.state) {
            return;
        }
        for k in keys
            .keys
            .iter()
            .filter(|k| k.record.state != KeyState::Removed)
        {
            let role = match k.record.role {
                Role::Csk => "csk",
                Role::Ksk => "ksk",
                Role::Zsk => "zsk",
            };
            self.metrics
                .dnssec_keys
                .with_label_values(&[&label, role, k.record.state.as_str()])
                .add(1);
        }
        for (role, end) in self.lifetime_ends(origin, &keys.state) {
            if let Some(end) = end {
                self.metrics
                    .dnssec_next_rollover
                    .with_label_values(&[&label, role_name(role)])
                    .set(i64::try_from(end).unwrap_or(i64::MAX));
            }
        }
    }

    /// What `GET /v1/zones/{zone}/dnssec` shows.
    pub fn dnssec_view(&self, origin: &Name) -> Option<DnssecView> {
        let zone = self.zones.load().get(origin)?;
        let loaded = self
            .dnssec_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(origin)
            .cloned();
        let loaded = loaded.unwrap_or_else(|| self.load_keys(origin).map(Arc::new));
        let (keys, error) = match &loaded {
            Ok(k) => (Some(k.clone()), None),
            Err(e) => (None, Some(e.clone())),
        };
        let enabled = keys
            .as_ref()
            .is_some_and(|k| self.dnssec_wanted(origin, &k.state));
        let mut ds = Vec::new();
        let mut views = Vec::new();
        for k in keys.iter().flat_map(|k| k.keys.iter()) {
            // What the parent should have: the CDS set (a retired key's DS is to go).
            if k.record.role.is_sep()
                && !matches!(k.record.state, KeyState::Removed | KeyState::Retired)
                && let Ok(d) = k.ds(origin)
            {
                ds.push(format!(
                    "{} {} IN DS {}",
                    name_text(origin),
                    self.config.dnssec.dnskey_ttl,
                    d
                ));
            }
            views.push(key_view(&k.record, &k.dnskey));
        }
        Some(DnssecView {
            zone: name_text(origin),
            enabled,
            signed: zone.is_signed(),
            ds,
            keys: views,
            earliest_expiry_secs: sign::earliest_expiry(&zone)
                .map(|e| e as i64 - unix_now() as i64),
            unsigning_since: keys.as_ref().and_then(|k| k.state.unsigning_since),
            ds_gone_at: keys.as_ref().and_then(|k| k.state.ds_gone_at),
            ds_ttl: keys.as_ref().and_then(|k| k.state.ds_ttl),
            next_rollover: keys
                .as_ref()
                .map(|k| {
                    self.lifetime_ends(origin, &k.state)
                        .into_iter()
                        .map(|(role, end)| (role_name(role), end))
                        .collect()
                })
                .unwrap_or_default(),
            error,
        })
    }

    /// Forgets a deleted zone's keys and series; the files go with the zone's commit.
    pub(super) fn forget_dnssec(&self, origin: &Name) {
        self.dnssec_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(origin);
        self.dnssec_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name_text(origin));
        self.auto_roll_retry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(origin);
        let _ = self
            .metrics
            .dnssec_expiry
            .remove_label_values(&[&name_text(origin)]);
        self.note_key_states(origin);
        let key = AssociationKey::zone(&name_text(origin));
        self.scheduler.unschedule(&key, Job::Resign);
        self.scheduler.unschedule(&key, Job::RollKeys);
    }

    /// The files of a zone's DNSSEC state to remove with it: state file and key files.
    pub(super) fn dnssec_files_to_remove(&self, origin: &Name) -> Vec<crate::durable::FileChange> {
        let mut out = Vec::new();
        let state_file = keys::state_file(&self.config.zones_dir, origin);
        if let Ok(state) = self.read_state(origin) {
            for k in &state.keys {
                let f = keys::key_file(&self.config.keys_dir, origin, &k.id);
                if f.exists() {
                    out.push(crate::durable::FileChange::remove(&f));
                }
            }
        }
        if state_file.exists() {
            out.push(crate::durable::FileChange::remove(&state_file));
        }
        out
    }
}

fn key_view(record: &KeyRecord, dnskey: &hickory_proto::dnssec::rdata::DNSKEY) -> KeyView {
    KeyView {
        key_tag: record.key_tag,
        role: record.role,
        algorithm: record.algorithm.number(),
        state: record.state.as_str(),
        created: record.created,
        dnskey: dnskey.to_string(),
        ds_seen_at: record.ds_seen_at,
        ds_ttl: record.ds_ttl,
    }
}

/// Whether the SOA is signed by exactly the active data keys and the DNSKEY rrset by exactly
/// the active SEP keys (a rollover step changes which keys sign).
fn signed_by_active_keys(zone: &Zone, keys: &ZoneKeys) -> bool {
    use hickory_proto::dnssec::rdata::DNSSECRData;
    use hickory_proto::rr::{RData, RecordType};
    let view = zone.view();
    let tags = |rtype: RecordType| -> Vec<u16> {
        let mut t: Vec<u16> = view
            .rrsigs(zone.origin(), rtype)
            .filter_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::RRSIG(sig)) => Some(sig.input().key_tag),
                _ => None,
            })
            .collect();
        t.sort_unstable();
        t
    };
    let active = |pick: fn(Role) -> bool| -> Vec<u16> {
        let mut t: Vec<u16> = keys
            .keys
            .iter()
            .filter(|k| k.record.state == KeyState::Active && pick(k.record.role))
            .map(|k| k.record.key_tag)
            .collect();
        t.sort_unstable();
        t
    };
    tags(RecordType::SOA) == active(Role::signs_data)
        && tags(RecordType::DNSKEY) == active(Role::is_sep)
}

/// Whether the zone publishes the CDS delete record (RFC 8078 §4: `0 0 0 00`).
fn publishes_cds_delete(zone: &Zone) -> bool {
    zone.publishes_cds_delete()
}

/// Whether the zone's DNSKEY rrset is exactly the live keys'.
fn publishes_keys(zone: &Zone, keys: &ZoneKeys) -> bool {
    use hickory_proto::dnssec::rdata::DNSSECRData;
    use hickory_proto::rr::{RData, RecordType};
    let view = zone.view();
    let Some(set) = view
        .node(zone.origin())
        .and_then(|n| n.rrset(RecordType::DNSKEY))
    else {
        return false;
    };
    let live: Vec<&ZoneKey> = keys
        .keys
        .iter()
        .filter(|k| k.record.state != KeyState::Removed)
        .collect();
    set.records.len() == live.len()
        && live.iter().all(|k| {
            set.records
                .iter()
                .any(|r| matches!(&r.data, RData::DNSSEC(DNSSECRData::DNSKEY(d)) if *d == k.dnskey))
        })
}

/// How a signed zone denies existence (`None`: not signed).
fn denial_of(zone: &Zone) -> Option<crate::dnssec::Denial> {
    if !zone.is_signed() {
        None
    } else if zone.has_nsec3() {
        Some(crate::dnssec::Denial::Nsec3)
    } else {
        Some(crate::dnssec::Denial::Nsec)
    }
}

/// A new version of a zone as the DNSSEC policy wants it: signed with `keys` (reusing the
/// signatures of `previous` that still hold), or without any DNSSEC record.
pub(super) fn sign_version(
    zone: Zone,
    previous: Option<&Zone>,
    keys: Option<&ZoneKeys>,
    policy: &Policy,
    now: u64,
) -> Result<(Zone, SignStats), String> {
    let Some(keys) = keys else {
        if zone.is_signed() {
            return zone
                .unsigned()
                .map(|z| (z, SignStats::default()))
                .map_err(|e| e.message);
        }
        return Ok((zone, SignStats::default()));
    };
    let own;
    let policy = match keys.state.denial {
        Some(denial) if denial != policy.denial => {
            own = Policy {
                denial,
                ..policy.clone()
            };
            &own
        }
        _ => policy,
    };
    let (generated, stats) = sign::sign(
        &zone,
        previous,
        &keys.keys,
        policy,
        now,
        keys.state.unsigning_since.is_some(),
    )
    .map_err(|e| e.to_string())?;
    let signed = zone.with_generated(generated).map_err(|e| e.message)?;
    Ok((signed, stats))
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Csk => "csk",
        Role::Ksk => "ksk",
        Role::Zsk => "zsk",
    }
}

/// The DS TTL assumed when the parent's was never seen (a cache may hold a DS removed just
/// before we looked): a day, the usual TTL of DS records in TLDs.
const UNKNOWN_DS_TTL: u32 = 86_400;

/// Whether a step of `state` waits for what the parent serves: a new CSK/KSK whose DS must be
/// seen at every parent nameserver, or an unsigning that waits for the DS to be gone.
fn waits_for_parent(state: &ZoneState) -> bool {
    state.unsigning_since.is_some()
        || state
            .keys
            .iter()
            .any(|k| k.state == KeyState::Published && k.role.is_sep())
}

/// Keeps in `state` what the parent was seen serving: when the DS of a new CSK/KSK was first
/// at every parent nameserver (forgotten if a server answers without it again), and during
/// unsigning when no DS was first seen anywhere and the largest DS TTL seen before.
fn note_parent(
    origin: &Name,
    keys: &ZoneKeys,
    state: &mut ZoneState,
    parent: &crate::diagnose::dnssec::ParentDs,
    now: u64,
    events: &mut Vec<(&'static str, u16)>,
) {
    let sets = parent.sets(origin);
    let answered_without = |pick: &dyn Fn(&hickory_proto::dnssec::rdata::DS) -> bool| {
        sets.values().any(|s| {
            s.as_ref()
                .is_ok_and(|set| !set.iter().any(|(ds, _)| pick(ds)))
        })
    };
    if state.unsigning_since.is_some() {
        let ttl_seen = sets
            .values()
            .filter_map(|s| s.as_ref().ok())
            .flatten()
            .map(|(_, ttl)| *ttl)
            .max();
        if let Some(ttl) = ttl_seen {
            state.ds_ttl = Some(state.ds_ttl.map_or(ttl, |t| t.max(ttl)));
            if state.ds_gone_at.take().is_some() {
                events.push(("ds_back", 0));
            }
        } else if parent.none_anywhere(origin) && state.ds_gone_at.is_none() {
            state.ds_gone_at = Some(now);
            events.push(("ds_gone", 0));
        }
        return;
    }
    for k in state
        .keys
        .iter_mut()
        .filter(|k| k.state == KeyState::Published && k.role.is_sep())
    {
        let Some(zk) = keys.keys.iter().find(|z| z.record.id == k.id) else {
            continue;
        };
        let matches =
            |ds: &hickory_proto::dnssec::rdata::DS| ds.covers(origin, &zk.dnskey).unwrap_or(false);
        match parent.at_every_server(origin, matches) {
            Some(ttl) if k.ds_seen_at.is_none() => {
                k.ds_seen_at = Some(now);
                k.ds_ttl = Some(ttl);
                events.push(("ds_seen", k.key_tag));
            }
            Some(ttl) => k.ds_ttl = Some(k.ds_ttl.map_or(ttl, |t| t.max(ttl))),
            None if k.ds_seen_at.is_some() && answered_without(&matches) => {
                // A parent server lost the DS: the wait starts again when it is back.
                k.ds_seen_at = None;
                events.push(("ds_lost", k.key_tag));
            }
            None => {}
        }
    }
}

/// How much earlier than its lifetime says a zone's key is rolled: up to a tenth of the
/// lifetime, fixed by the zone's name and the key's role. Zones keyed together (10,000
/// signed in one start, or created in one batch) then do not all roll at once — each
/// rollover re-signs the zone and NOTIFYs its secondaries —, and no key outlives its
/// lifetime. The same zone gets the same spread at every rollover, so its rollovers stay
/// apart from the others'.
pub fn rollover_spread(origin: &Name, role: Role, lifetime: u64) -> u64 {
    let window = lifetime / 10;
    if window == 0 {
        return 0;
    }
    // FNV-1a over the lower-cased name and the role, then splitmix64's finaliser: only
    // spread is needed, not secrecy.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let role_byte = match role {
        Role::Csk => 1u8,
        Role::Ksk => 2,
        Role::Zsk => 3,
    };
    for b in origin
        .to_lowercase()
        .to_ascii()
        .bytes()
        .chain(std::iter::once(role_byte))
    {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (h ^ (h >> 31)) % (window + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollovers_of_zones_keyed_together_are_spread_over_a_tenth_of_the_lifetime() {
        let lifetime = 90 * 86400;
        let spreads: Vec<u64> = (0..1000)
            .map(|i| {
                let name = Name::from_ascii(format!("zone-{i}.test.")).unwrap();
                rollover_spread(&name, Role::Zsk, lifetime)
            })
            .collect();
        assert!(
            spreads.iter().all(|&s| s <= lifetime / 10),
            "never past a tenth"
        );
        // Spread over the window: every tenth of it holds some, none holds most.
        let mut buckets = [0usize; 10];
        for s in &spreads {
            buckets[(s * 10 / (lifetime / 10 + 1)) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (50..=150).contains(&n)),
            "{buckets:?}"
        );
    }

    #[test]
    fn a_zone_gets_the_same_rollover_spread_whatever_the_spelling_of_its_name() {
        let a = Name::from_ascii("Shop.Example.").unwrap();
        let b = Name::from_ascii("shop.example.").unwrap();
        assert_eq!(
            rollover_spread(&a, Role::Csk, 365 * 86400),
            rollover_spread(&b, Role::Csk, 365 * 86400)
        );
        assert_eq!(rollover_spread(&a, Role::Csk, 9), 0, "no window below 10 s");
    }
}
