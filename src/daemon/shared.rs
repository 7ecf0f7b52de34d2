//! The state shared by the DNS loops, the HTTP API and the background jobs, and the API
//! the HTTP side calls (re-exported here so that `http` depends on this module only).
//!
//! This module owns the [`Shared`] struct and reload. It must not bind sockets or start
//! tasks (`server` does) nor answer queries (`dns` does).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::Mutex;

pub use super::acme::CertificateStatus;
pub use super::associations::{
    AssociateRequest, AssociationChange, AssociationError, AssociationReport,
};
pub use super::dkim::SignError;
pub use super::dnssec::ZoneDnssecSettings;
pub use super::scheduler::AssociationKey;
pub use super::writer::{Changed, SoaRequest, WriteError};
use super::{diagnosis, scheduler};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::provision::association::{ASSOCIATIONS_DIR, Associations};
use crate::provision::platform::Platform;
pub use crate::transfer::status::{SecondarySummary, SecondaryZoneStatus};
use crate::zone::ZoneSet;

/// The outcome of one reload, as reported by the API.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadSummary {
    pub zones_loaded: usize,
    /// One entry per zone file that failed, `file:line: reason`.
    pub errors: Vec<String>,
}

/// Signing keys by file, with the stamp of the file they were read from.
type DkimKeyCache =
    std::collections::HashMap<PathBuf, (crate::dkim::key::FileStamp, Arc<crate::dkim::SigningKey>)>;

/// State shared by the DNS loops, the HTTP API and the signal handlers.
pub struct Shared {
    pub config: Config,
    /// The snapshot the DNS path answers from; replaced whole, never mutated.
    pub zones: Arc<ArcSwap<ZoneSet>>,
    pub metrics: Arc<Metrics>,
    pub token: String,
    /// Scoped API tokens (hashes), besides the admin token.
    pub tokens: super::tokens::TokenStore,
    pub started: Instant,
    pub dns_addrs: Vec<SocketAddr>,
    /// Domain associations, as persisted in `zones/associations/`.
    pub associations: ArcSwap<Associations>,
    /// The configured platforms; re-read from the config file on reload.
    pub platforms: ArcSwap<Vec<Platform>>,
    /// The file the configuration came from, if any (re-read on reload for platforms).
    pub config_file: Option<PathBuf>,
    /// Signing keys loaded so far, by file (not on the DNS path).
    pub(super) dkim_keys: std::sync::Mutex<DkimKeyCache>,
    /// Domains whose signing key cannot be used, and why.
    pub dkim_errors: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// DNSSEC signing keys loaded so far, by zone (not on the DNS path).
    pub(super) dnssec_keys: std::sync::Mutex<super::dnssec::KeyCache>,
    /// Zones whose DNSSEC keys cannot be used, and why.
    pub dnssec_errors: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// Whether the start-up DNSSEC policy pass over the zones served from their stored
    /// signatures is done (it runs after the first answer: [`Shared::finish_start_pass`]).
    pub(super) start_pass: tokio::sync::watch::Sender<bool>,
    /// Zones whose automatic key rollover could not start, and when (signing clock) it is
    /// tried again; an entry goes with its zone.
    pub(super) auto_roll_retry:
        std::sync::Mutex<std::collections::HashMap<hickory_proto::rr::Name, u64>>,
    /// Seconds added to the clock of DNSSEC signing and certificate renewal (tests move
    /// time forward with [`Shared::advance_clock`]).
    pub(super) clock_offset: std::sync::atomic::AtomicU64,
    /// Certificates by ACME: the client, and each domain's certificate and failures.
    pub(super) acme: super::acme::AcmeState,
    /// The web listener's certificates, registered by the composition root when the
    /// listener is on (ACME installs into them; otherwise into the folder alone).
    pub web_certs: std::sync::OnceLock<Arc<crate::web::tls::CertStore>>,
    /// The pending ACME HTTP-01 challenges: put in and taken out by the orders (and when a
    /// domain is dissociated), answered by the plain-HTTP web listener.
    pub acme_tokens: Arc<crate::web::challenge::ChallengeTokens>,
    /// Diagnosis results.
    pub diagnosis: diagnosis::DiagnosisState,
    /// Every background job of every association, by deadline.
    pub scheduler: scheduler::Scheduler,
    /// DKIM keys generated ahead of use, outside the writer lock.
    pub(super) key_pool: Arc<crate::dkim::key::KeyPool>,
    /// Serialises reloads and every write: one writer at a time.
    pub(super) writer: Mutex<()>,
    /// What each secondary has had (NOTIFYs, transfers, lag); shared with the DNS side.
    pub transfer_status: Arc<crate::transfer::status::TransferStatus>,
    /// Tells secondaries about changes; the writer only records them (never waits).
    pub notifier: Arc<crate::transfer::notify::Notifier>,
    /// What else a reload re-reads (the web listener's certificates), registered by the
    /// composition root so that this module needs to know nothing of it.
    pub reload_hooks: std::sync::Mutex<Vec<ReloadHook>>,
}

/// Something a reload (SIGHUP, `POST /v1/reload`) also re-reads.
pub type ReloadHook = Box<dyn Fn() + Send + Sync>;

impl Shared {
    /// The state of a daemon about to start: no zones published yet, nothing scheduled.
    pub fn new(
        config: Config,
        config_file: Option<PathBuf>,
        metrics: Arc<Metrics>,
        token: String,
        dns_addrs: Vec<SocketAddr>,
        associations: Associations,
    ) -> Self {
        let transfer_status = Arc::new(crate::transfer::status::TransferStatus::for_config(
            &config.transfer,
        ));
        let notifier = Arc::new(crate::transfer::notify::Notifier::new(
            &config.transfer,
            transfer_status.clone(),
        ));
        Self {
            transfer_status,
            notifier,
            zones: Arc::new(ArcSwap::from_pointee(ZoneSet::default())),
            metrics,
            token,
            tokens: super::tokens::TokenStore::new(&config),
            started: Instant::now(),
            dns_addrs,
            associations: ArcSwap::from_pointee(associations),
            platforms: ArcSwap::from_pointee(config.platforms.clone()),
            config_file,
            dkim_keys: Default::default(),
            dkim_errors: Default::default(),
            dnssec_keys: Default::default(),
            dnssec_errors: Default::default(),
            start_pass: tokio::sync::watch::channel(false).0,
            auto_roll_retry: Default::default(),
            clock_offset: Default::default(),
            acme: Default::default(),
            web_certs: Default::default(),
            acme_tokens: Default::default(),
            diagnosis: diagnosis::DiagnosisState::new(&config.diagnosis),
            scheduler: Default::default(),
            key_pool: Default::default(),
            writer: Mutex::new(()),
            reload_hooks: Default::default(),
            config,
        }
    }

    /// Whether the single writer can be had within `within` (readiness: a change would not
    /// hang behind a stuck one). Taken and released at once.
    pub async fn writer_available(&self, within: std::time::Duration) -> bool {
        tokio::time::timeout(within, self.writer.lock())
            .await
            .is_ok()
    }

    /// The writer lock itself: tests hold it to see what waits behind a stuck writer.
    #[doc(hidden)]
    pub fn writer_lock(&self) -> &Mutex<()> {
        &self.writer
    }

    /// Re-reads the zones folder and publishes the result. Queries in flight keep the old
    /// snapshot; the next ones see the new one. A broken file keeps its last good version.
    pub async fn reload(&self) -> Result<ReloadSummary, std::io::Error> {
        let summary = self.reload_files().await?;
        self.reconcile().await;
        // Every deadline derives from saved state: the set is rebuilt from the files.
        self.rebuild_schedule();
        self.check_dkim_keys();
        if let Ok(hooks) = self.reload_hooks.lock() {
            for hook in hooks.iter() {
                hook();
            }
        }
        Ok(summary)
    }

    /// Re-reads the platforms of the config file (other settings need a restart) and the
    /// zones folder.
    pub(super) async fn reload_files(&self) -> Result<ReloadSummary, std::io::Error> {
        let _writer = self.writer.lock().await;
        if let Some(file) = &self.config_file {
            match Config::load(file) {
                Ok(c) => self.platforms.store(Arc::new(c.platforms)),
                Err(e) => {
                    self.metrics.reload_failures.inc();
                    tracing::error!(error = %e, "config not reloaded; keeping the previous platforms");
                }
            }
        }
        self.metrics.reloads.inc();
        let previous = self.zones.load_full();
        let catalog_floor = self
            .catalog_name()
            .and_then(|c| previous.get(&c))
            .map_or(0, |c| c.serial());
        let dir = self.config.zones_dir.clone();
        let max = self.config.max_zone_file_bytes;
        let limits = self.config.transfer.journal;
        let report = tokio::task::spawn_blocking(move || {
            let report = ZoneSet::load_dir_with(&dir, Some(&previous), max, &limits)?;
            super::commit_journal_files(&report.journal_files);
            Ok::<_, std::io::Error>(report)
        })
        .await
        .map_err(std::io::Error::other)?;
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                self.metrics.reload_failures.inc();
                tracing::error!(dir = %self.config.zones_dir.display(), error = %e, "reload failed: cannot read the zones folder; still serving the previous zones");
                return Err(e);
            }
        };
        if !report.errors.is_empty() {
            self.metrics.reload_failures.inc();
        }
        match Associations::load_dir(&self.config.zones_dir.join(ASSOCIATIONS_DIR)) {
            Ok(set) => {
                for (domain, error) in set.broken() {
                    tracing::error!(%domain, %error, "association file not loaded");
                }
                self.associations.store(Arc::new(set));
            }
            Err(e) => tracing::error!(error = %e, "associations not reloaded"),
        }
        let summary = self.publish(report);
        // Keys and zone settings are read again; zones follow the DNSSEC policy.
        self.dnssec_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.sign_zones_locked().await;
        // Files added or removed by hand: the catalog follows.
        if let Err(e) = self.sync_catalog_locked(catalog_floor).await {
            tracing::error!(error = %e, "catalog zone not updated");
        }
        tracing::info!(
            zones = summary.zones_loaded,
            failed = summary.errors.len(),
            "reload done"
        );
        Ok(summary)
    }

    pub(crate) fn publish(&self, report: crate::zone::set::LoadReport) -> ReloadSummary {
        for e in &report.errors {
            tracing::error!(error = %e, "zone not loaded");
        }
        let zones_loaded = report.set.len();
        let failing = report.errors.len();
        let previous = self.zones.swap(Arc::new(report.set));
        self.notify_differences(&previous);
        self.metrics.zones_loaded.set(zones_loaded as i64);
        self.metrics.zones_failing.set(failing as i64);
        ReloadSummary {
            zones_loaded,
            errors: report.errors,
        }
    }

    /// After a reload (or the start), secondaries hear of the zones whose serial changed
    /// (or that are new), and the state of the zones that went goes.
    fn notify_differences(&self, previous: &ZoneSet) {
        let current = self.zones.load();
        for zone in current.zones() {
            if previous.get(zone.origin()).map(|z| z.serial()) != Some(zone.serial()) {
                self.notifier.changed(zone.origin(), zone.soa());
            }
        }
        for zone in previous.zones() {
            if current.get(zone.origin()).is_none() {
                self.notifier.removed(zone.origin());
            }
        }
    }

    /// Sets the per-secondary lag gauges (called when the metrics are read).
    pub fn refresh_transfer_metrics(&self) {
        for (secondary, (lag, behind)) in self.transfer_status.lag_by_secondary() {
            self.metrics
                .secondary_lag_seconds
                .with_label_values(&[secondary.as_str()])
                .set(lag);
            self.metrics
                .secondary_zones_behind
                .with_label_values(&[secondary.as_str()])
                .set(behind as i64);
        }
    }
}
