//! The running daemon: loads the zones, binds the listeners, publishes snapshots, reloads.
//!
//! This module owns start-up order (zones first, then sockets, so the first query already
//! has answers), the shared state handed to the DNS and HTTP sides, reload (one at a time,
//! never dropping a query), and shutdown. Tests start a [`Daemon`] in-process on port 0 and
//! read the bound addresses back. It must not parse DNS or HTTP itself.

pub mod associations;
pub mod diagnosis;
pub mod dkim;
pub mod token;
pub mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinSet;

use std::path::PathBuf;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::provision::association::{ASSOCIATIONS_DIR, Associations};
use crate::provision::platform::Platform;
use crate::zone::ZoneSet;

/// Why the daemon could not start. Each variant says what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read the zones folder {dir}")]
    ZonesDir { dir: String, source: std::io::Error },
    #[error("cannot bind DNS on {addr}")]
    BindDns {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot bind HTTP on {addr}")]
    BindHttp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("API token")]
    Token(#[from] token::TokenError),
    #[error("metrics registry")]
    Metrics(#[from] prometheus::Error),
    #[error("associations: {0}")]
    Associations(String),
}

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
    pub started: Instant,
    pub dns_addrs: Vec<SocketAddr>,
    /// Domain associations, as persisted in `zones/associations/`.
    pub associations: ArcSwap<Associations>,
    /// The configured platforms; re-read from the config file on reload.
    pub platforms: ArcSwap<Vec<Platform>>,
    /// The file the configuration came from, if any (re-read on reload for platforms).
    pub config_file: Option<PathBuf>,
    /// Signing keys loaded so far, by file (not on the DNS path).
    dkim_keys: std::sync::Mutex<DkimKeyCache>,
    /// Domains whose signing key cannot be used, and why.
    pub dkim_errors: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// Diagnosis results and schedule.
    pub diagnosis: diagnosis::DiagnosisState,
    /// Serialises reloads and every write: one writer at a time.
    writer: Mutex<()>,
}

impl Shared {
    /// Re-reads the zones folder and publishes the result. Queries in flight keep the old
    /// snapshot; the next ones see the new one. A broken file keeps its last good version.
    pub async fn reload(&self) -> Result<ReloadSummary, std::io::Error> {
        let summary = self.reload_files().await?;
        self.reconcile().await;
        Ok(summary)
    }

    /// Re-reads the platforms of the config file (other settings need a restart) and the
    /// zones folder.
    async fn reload_files(&self) -> Result<ReloadSummary, std::io::Error> {
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
        let dir = self.config.zones_dir.clone();
        let report = tokio::task::spawn_blocking(move || ZoneSet::load_dir(&dir, Some(&previous)))
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
        tracing::info!(
            zones = summary.zones_loaded,
            failed = summary.errors.len(),
            "reload done"
        );
        Ok(summary)
    }

    fn publish(&self, report: crate::zone::set::LoadReport) -> ReloadSummary {
        for e in &report.errors {
            tracing::error!(error = %e, "zone not loaded");
        }
        let zones_loaded = report.set.len();
        let failing = report.errors.len();
        self.zones.store(Arc::new(report.set));
        self.metrics.zones_loaded.set(zones_loaded as i64);
        self.metrics.zones_failing.set(failing as i64);
        ReloadSummary {
            zones_loaded,
            errors: report.errors,
        }
    }
}

/// A running daemon. Dropping it stops every listener.
pub struct Daemon {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    tasks: JoinSet<()>,
    http_task: tokio::task::JoinHandle<()>,
    http_stop: Option<oneshot::Sender<()>>,
}

impl Daemon {
    /// Loads the zones, binds DNS and HTTP, and starts serving.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        Self::start_with_config_file(config, None).await
    }

    /// Like [`Daemon::start`], remembering the config file so a reload re-reads platforms.
    pub async fn start_with_config_file(
        config: Config,
        config_file: Option<PathBuf>,
    ) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new()?);
        let token = token::load_or_create(&config)?;

        let dir = config.zones_dir.clone();
        let report = tokio::task::spawn_blocking(move || {
            for folder in [dir.clone(), dir.join(ASSOCIATIONS_DIR)] {
                if let Ok(n) = crate::durable::remove_stale_temp_files(&folder)
                    && n > 0
                {
                    tracing::warn!(dir = %folder.display(), removed = n, "removed temp files left by a crash");
                }
            }
            ZoneSet::load_dir(&dir, None)
        })
        .await
        .map_err(|e| StartError::ZonesDir {
            dir: config.zones_dir.display().to_string(),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| StartError::ZonesDir {
            dir: config.zones_dir.display().to_string(),
            source,
        })?;

        let associations = Associations::load_dir(&config.zones_dir.join(ASSOCIATIONS_DIR))
            .map_err(StartError::Associations)?;
        for (domain, error) in associations.broken() {
            tracing::error!(%domain, %error, "association file not loaded; changes to this domain are refused until it is fixed");
        }

        let mut bound = Vec::new();
        for addr in &config.dns.listen {
            let b = crate::dns::bind(*addr, config.dns.udp_sockets).map_err(|source| {
                StartError::BindDns {
                    addr: *addr,
                    source,
                }
            })?;
            bound.push(b);
        }
        let dns_addrs: Vec<SocketAddr> = bound.iter().map(|b| b.local).collect();
        let http_listener = TcpListener::bind(config.http.listen)
            .await
            .map_err(|source| StartError::BindHttp {
                addr: config.http.listen,
                source,
            })?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|source| StartError::BindHttp {
                addr: config.http.listen,
                source,
            })?;

        let shared = Arc::new(Shared {
            zones: Arc::new(ArcSwap::from_pointee(ZoneSet::default())),
            metrics: metrics.clone(),
            token,
            started: Instant::now(),
            dns_addrs: dns_addrs.clone(),
            associations: ArcSwap::from_pointee(associations),
            platforms: ArcSwap::from_pointee(config.platforms.clone()),
            config_file,
            dkim_keys: Default::default(),
            dkim_errors: Default::default(),
            diagnosis: Default::default(),
            writer: Mutex::new(()),
            config,
        });
        let summary = shared.publish(report);
        for status in shared.zones.load().statuses() {
            if status.serving {
                tracing::info!(zone = %status.name, serial = status.serial.unwrap_or(0), records = status.records, "zone loaded");
            }
        }
        // Before the first query: associations whose platform changed, or whose records a
        // crash left unwritten, are brought up to date.
        let reconciled = shared.reconcile().await;
        shared.check_dkim_keys();
        if reconciled > 0 {
            tracing::info!(
                associations = reconciled,
                "associations reconciled at start"
            );
        }

        let mut tasks = JoinSet::new();
        let ctx = Arc::new(crate::dns::context(
            &shared.config,
            shared.zones.clone(),
            metrics.clone(),
        ));
        tasks.spawn(crate::problems::summarise(
            metrics.clone(),
            std::time::Duration::from_secs(shared.config.log.summary_interval_secs.max(1)),
        ));
        for b in bound {
            crate::dns::serve(
                b,
                ctx.clone(),
                shared.config.dns.tcp_max_connections,
                &mut tasks,
            );
        }
        // The DKIM clock: rotations and removals of retired keys.
        let clock = shared.clone();
        let every = std::time::Duration::from_millis(shared.config.dkim_check_interval_ms.max(10));
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                clock.dkim_tick().await;
            }
        });
        tasks.spawn(shared.clone().diagnosis_loop());
        let (http_stop, stopped) = oneshot::channel::<()>();
        let http_task = tokio::spawn(crate::http::serve(http_listener, shared.clone(), async {
            let _ = stopped.await;
        }));
        for addr in &dns_addrs {
            tracing::info!(%addr, "DNS listening on UDP and TCP");
        }
        tracing::info!(addr = %http_addr, "HTTP listening");
        tracing::info!(
            zones = summary.zones_loaded,
            failed = summary.errors.len(),
            "serving"
        );
        Ok(Self {
            shared,
            http_addr,
            tasks,
            http_task,
            http_stop: Some(http_stop),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The DNS addresses actually bound (UDP and TCP share each one).
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.shared.dns_addrs
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stops accepting work: HTTP finishes its requests in flight, DNS loops stop.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.http_stop.take() {
            let _ = stop.send(());
        }
        // HTTP finishes the requests in flight; DNS answers are instantaneous.
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.http_task)
            .await
            .is_err()
        {
            self.http_task.abort();
        }
        self.tasks.shutdown().await;
        tracing::info!("stopped");
    }
}
