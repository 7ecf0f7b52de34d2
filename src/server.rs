//! The running process: loads the zones, binds the DNS and HTTP listeners, starts the
//! scheduler, and stops it all when dropped.
//!
//! This module owns start-up order (zones first, then sockets, so the first query already
//! has answers) and shutdown. Tests start a [`Daemon`] in-process on port 0 and read the
//! bound addresses back. It is the composition root: it wires [`crate::daemon`],
//! [`crate::dns`] and [`crate::http`] together and must not hold logic of its own.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use std::path::PathBuf;

use crate::config::Config;
use crate::daemon::{Shared, token};
use crate::metrics::Metrics;
use crate::provision::association::{ASSOCIATIONS_DIR, Associations};
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
    #[error("cannot bind the web listener (web) on {addr}")]
    BindWeb {
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
    #[error("scoped API tokens: {0}")]
    Tokens(#[from] crate::daemon::tokens::TokenStoreError),
    #[error("TSIG key: {0}")]
    TsigKey(#[from] crate::transfer::KeyError),
    #[error("TSIG key: {0}")]
    TsigSigner(#[from] crate::transfer::tsig::TsigFailure),
    #[error("metrics registry")]
    Metrics(#[from] prometheus::Error),
    #[error("associations: {0}")]
    Associations(String),
    #[error("catalog zone (transfer.catalog): {0}")]
    Catalog(String),
}

/// A running daemon. Dropping it stops every listener.
pub struct Daemon {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    tasks: JoinSet<()>,
    http_task: tokio::task::JoinHandle<()>,
    http_stop: Option<oneshot::Sender<()>>,
    web: Option<WebListeners>,
}

/// The public web listeners, when `web.enabled`.
struct WebListeners {
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    certs: Arc<crate::web::tls::CertStore>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// The web listener's view of the associations: which platform serves a domain's clients
/// and which MTA-STS policy it has.
struct AssociatedSites(Arc<Shared>);

impl crate::web::Sites for AssociatedSites {
    fn site(&self, domain: &str) -> Option<crate::web::Site> {
        let associations = self.0.associations.load();
        let platforms = self.0.platforms.load();
        let key = format!("{domain}.");
        let list: Vec<_> = associations.for_domain(&key).collect();
        let platform = |id: &str| platforms.iter().find(|p| p.id == id);
        let clients = list
            .iter()
            .find(|a| a.records.autoconfig)
            .or(list.first())
            .and_then(|a| platform(&a.platform))?
            .clone();
        let mta_sts_policy = list
            .iter()
            .find(|a| a.records.mta_sts)
            .and_then(|a| platform(&a.platform))
            .and_then(|p| p.mta_sts_policy());
        Some(crate::web::Site {
            clients,
            mta_sts_policy,
        })
    }
}

/// Binds the web listeners of `web` (when enabled) and serves them.
async fn start_web(shared: &Arc<Shared>) -> Result<Option<WebListeners>, StartError> {
    let config = shared.config.web.clone();
    if !config.enabled {
        return Ok(None);
    }
    let certs = Arc::new(crate::web::tls::CertStore::new(
        shared.config.keys_dir.join("certs"),
    ));
    // ACME installs what it obtains into the store the listener serves from (set before
    // the first load: an installation in between is on disk, so the load sees it).
    let _ = shared.web_certs.set(certs.clone());
    for e in certs.load() {
        tracing::error!(error = %e, "web certificate not loaded");
    }
    {
        let certs = certs.clone();
        if let Ok(mut hooks) = shared.reload_hooks.lock() {
            hooks.push(Box::new(move || {
                for e in certs.load() {
                    tracing::error!(error = %e, "web certificate not reloaded; keeping the previous one");
                }
            }));
        }
    }
    let limits = crate::web::Limits::from_config(&config, &shared.config.log);
    let app = crate::web::router(
        Arc::new(AssociatedSites(shared.clone())),
        shared.acme_tokens.clone(),
        shared.metrics.clone(),
        limits,
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut out = WebListeners {
        http_addr: None,
        https_addr: None,
        certs: certs.clone(),
        tasks: Vec::new(),
        stop,
    };
    for (addr, tls) in [(config.http_listen, false), (config.https_listen, true)] {
        let Some(addr) = addr else { continue };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::BindWeb { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| StartError::BindWeb { addr, source })?;
        let mut stopped = stopped.clone();
        out.tasks.push(tokio::spawn(crate::web::serve(
            listener,
            tls.then(|| certs.clone()),
            app.clone(),
            shared.metrics.clone(),
            limits,
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        )));
        if tls {
            out.https_addr = Some(bound);
            tracing::info!(addr = %bound, "web listening (HTTPS)");
        } else {
            out.http_addr = Some(bound);
            tracing::info!(addr = %bound, "web listening (HTTP)");
        }
    }
    Ok(Some(out))
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
        let started = std::time::Instant::now();
        let metrics = Arc::new(Metrics::new()?);
        let token = token::load_or_create(&config)?;
        // Keys are checked (and generated) at start so a loose or broken key file stops the
        // daemon with its path rather than failing a transfer later.
        let tsig_keys = crate::transfer::load_or_create_all(&config)?;

        let dir = config.zones_dir.clone();
        let max_zone_file_bytes = config.max_zone_file_bytes;
        let journal_limits = config.transfer.journal;
        let report = tokio::task::spawn_blocking(move || {
            let folder = dir.join(ASSOCIATIONS_DIR);
            if let Ok(n) = crate::durable::remove_stale_temp_files(&folder)
                && n > 0
            {
                tracing::warn!(dir = %folder.display(), removed = n, "removed temp files left by a crash");
            }
            let report = ZoneSet::load_dir_with(&dir, None, max_zone_file_bytes, &journal_limits)?;
            // The zones folder's temp files come with its one listing (a second listing of
            // 30,000 files was a tenth of a signed restart); nothing writes them yet.
            let removed = report
                .temp_files
                .iter()
                .filter(|f| std::fs::remove_file(f).is_ok())
                .count();
            if removed > 0 {
                tracing::warn!(dir = %dir.display(), removed, "removed temp files left by a crash");
            }
            crate::daemon::commit_journal_files(&report.journal_files);
            Ok::<_, std::io::Error>(report)
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
            let b = crate::dns::bind(*addr, config.dns.udp_sockets, config.dns.max_udp_payload)
                .map_err(|source| StartError::BindDns {
                    addr: *addr,
                    source,
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

        let shared = Arc::new(Shared::new(
            config,
            config_file,
            metrics.clone(),
            token,
            dns_addrs.clone(),
            associations,
        ));
        shared.tokens.load_file()?;
        let summary = shared.publish(report);
        // The catalog lists what is served before anyone can transfer it.
        shared
            .sync_catalog_at_start()
            .await
            .map_err(StartError::Catalog)?;
        // Zones are brought to the DNSSEC policy before the first query where their stored
        // signatures are missing or due (nothing is served unsigned that is to be signed);
        // those served from current stored signatures are checked after the first answer.
        let start_pass = shared.sign_zones_at_start().await;
        // 100,000 statuses are not cloned and sorted for lines nobody logs.
        let statuses = if tracing::enabled!(tracing::Level::INFO) {
            shared.zones.load().statuses()
        } else {
            Vec::new()
        };
        for status in statuses {
            if status.serving {
                tracing::info!(zone = %status.name, serial = status.serial.unwrap_or(0), records = status.records, "zone loaded");
            }
        }
        // Before the first query: key files a crash left half-placed are completed,
        // associations whose platform changed, or whose records a crash left unwritten, are
        // brought up to date.
        shared.recover_key_files();
        let reconciled = shared.reconcile().await;
        shared.check_dkim_keys();
        if reconciled > 0 {
            tracing::info!(
                associations = reconciled,
                "associations reconciled at start"
            );
        }

        let mut tasks = JoinSet::new();
        let mut ctx = crate::dns::context(&shared.config, shared.zones.clone(), metrics.clone());
        let transfers = crate::transfer::xfr::Service::new(
            &tsig_keys,
            &shared.config.transfer,
            shared.config.dns.max_udp_payload,
            shared.transfer_status.clone(),
        )?;
        ctx.transfers = Some(Arc::new(transfers));
        ctx.updates = Some(Arc::new(crate::update::Service::new(
            shared.clone(),
            &tsig_keys,
        )?));
        let ctx = Arc::new(ctx);
        let counted = metrics.clone();
        tasks.spawn(crate::problems::summarise(
            move |p| counted.problems(p),
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
        // One scheduler for every background job: diagnoses, rotations, retired keys.
        shared.rebuild_schedule();
        tasks.spawn(shared.clone().finish_start_pass(start_pass, started));
        tasks.spawn(shared.clone().run_scheduler());
        // NOTIFY to secondaries; the zones published above are announced first (a restart
        // tells every secondary to check its serial).
        tasks.spawn(shared.notifier.clone().run(tsig_keys, metrics.clone()));
        let (http_stop, stopped) = oneshot::channel::<()>();
        let http_task = tokio::spawn(crate::http::serve(http_listener, shared.clone(), async {
            let _ = stopped.await;
        }));
        let web = start_web(&shared).await?;
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
            web,
        })
    }

    /// The public web listener's plain HTTP address, when it is on.
    pub fn web_http_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().and_then(|w| w.http_addr)
    }

    /// The public web listener's HTTPS address, when it is on.
    pub fn web_https_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().and_then(|w| w.https_addr)
    }

    /// The web listener's certificates, when it is on.
    pub fn web_certs(&self) -> Option<&Arc<crate::web::tls::CertStore>> {
        self.web.as_ref().map(|w| &w.certs)
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
        if let Some(web) = self.web.take() {
            let _ = web.stop.send(true);
            for t in web.tasks {
                if tokio::time::timeout(std::time::Duration::from_secs(5), t)
                    .await
                    .is_err()
                {
                    tracing::warn!("web listener did not stop in time");
                }
            }
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
