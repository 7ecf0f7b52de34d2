//! The HTTP side: health, status, Prometheus metrics and the `/v1` API.
//!
//! This module owns routes, the bearer-token check, the JSON error shape
//! `{"error": {"code", "message", "field"}}` (`field` only when one request field is at
//! fault) and the connection limits: the accept loop ([`serve`]) with its connection cap,
//! header and body read timeouts and keep-alive limits. It must not change state itself:
//! mutations go through the daemon's single writer ([`crate::daemon::shared::Shared`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use crate::config::OpenReads;
use crate::daemon::shared::Shared;
use crate::daemon::tokens::{Access, Grant, Target};
use crate::problems::Problem;

pub mod dkim;
pub mod domains;
pub mod page;
pub mod tokens;
pub mod zones;
use crate::zone::ZoneStatus;

type AppState = Arc<Shared>;

/// The router of every HTTP endpoint.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/v1/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/reload", post(reload))
        .route("/v1/zones", get(zones::list).post(zones::create))
        .route(
            "/v1/zones/{zone}",
            get(zones::show)
                .patch(zones::patch_zone)
                .delete(zones::delete),
        )
        .route("/v1/zones/{zone}/dnssec", get(zones::dnssec))
        .route("/v1/zones/{zone}/dnssec/rollover", post(zones::rollover))
        .route(
            "/v1/zones/{zone}/records",
            get(zones::records).patch(zones::patch_records),
        )
        .route("/v1/zones/{zone}/export", get(zones::export))
        .route("/v1/domains/{domain}/dkim/rotate", post(dkim::rotate))
        .route("/v1/domains/{domain}/diagnose", post(domains::diagnose))
        .route("/", get(page::status_page))
        .route("/v1/dkim/sign", post(dkim::sign))
        .route("/v1/domains", get(domains::list).post(domains::associate))
        .route(
            "/v1/domains/{domain}",
            get(domains::show)
                .patch(domains::change)
                .delete(domains::remove),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(shared.config.http.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            count_requests,
        ))
        .with_state(shared)
}

/// An API error: an HTTP status, a stable code and a message for humans.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request field at fault (`name`, `operations[1].records[0]`), when one is.
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        let body = json!({ "error": error });
        (self.status, Json(body)).into_response()
    }
}

/// Checks that the caller holds the admin token (`Authorization: Bearer <token>`).
pub fn require_token(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    authorize(shared, headers, Access::Write, Target::Admin).map(|_| ())
}

/// Who the bearer token is: the admin token (compared in constant time) or a scoped token
/// (looked up by its SHA-256). 401 without a token or with an unknown or revoked one.
pub fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Grant, ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // Exactly one space and the token: padding around it is refused, not trimmed.
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this call needs the header Authorization: Bearer <token>",
        ));
    };
    let expected = shared.token.as_bytes();
    let bytes = given.as_bytes();
    let mut diff = expected.len() ^ bytes.len();
    for (i, b) in expected.iter().enumerate() {
        diff |= usize::from(b ^ bytes.get(i).copied().unwrap_or(0));
    }
    if diff == 0 {
        return Ok(Grant::Admin);
    }
    match shared.tokens.find(given) {
        Some(t) => Ok(Grant::Scoped(t)),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong token",
        )),
    }
}

/// 403 unless `grant` may do `access` on `target`.
pub fn permit(grant: &Grant, access: Access, target: Target<'_>) -> Result<(), ApiError> {
    if grant.allows(access, target) {
        return Ok(());
    }
    let what = match target {
        Target::Admin => "this call needs the admin token".to_string(),
        Target::Any => format!("this token may not {}", access_word(access)),
        Target::Zone(z) => format!(
            "this token may not {} the zone {}",
            access_word(access),
            crate::zone::writer::name_text(z)
        ),
        Target::Association(d, p) => format!(
            "this token may not {} the association of {} with {p}",
            access_word(access),
            crate::zone::writer::name_text(d)
        ),
    };
    Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", what))
}

fn access_word(access: Access) -> &'static str {
    match access {
        Access::Read => "read",
        Access::Write => "change",
    }
}

/// The caller, checked for `access` on `target`.
pub fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    access: Access,
    target: Target<'_>,
) -> Result<Grant, ApiError> {
    let grant = authenticate(shared, headers)?;
    permit(&grant, access, target)?;
    Ok(grant)
}

/// `/`, `/v1/status` and `/metrics`: open while `http.open_reads` allows it (by default only
/// while HTTP is bound to a loopback address), otherwise any valid token.
pub fn require_read_access(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let open = match shared.config.http.open_reads {
        OpenReads::Always => true,
        OpenReads::Never => false,
        OpenReads::Loopback => shared.config.http.listen.ip().is_loopback(),
    };
    if open {
        return Ok(());
    }
    authorize(shared, headers, Access::Read, Target::Any).map(|_| ())
}

async fn count_requests(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    // Label by route template, never by raw path, to keep the label set bounded.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let response = next.run(request).await;
    shared
        .metrics
        .http_requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: 200 only when every DNS listener answers (a real query over UDP and a TCP
/// connection, from here), every zone that has a file is served, and the single writer can
/// be had within a second (a change would not hang); otherwise 503 naming what is not
/// ready. `/healthz` stays liveness: it answers as long as the process runs.
async fn readyz(State(shared): State<AppState>) -> Response {
    let mut problems: Vec<String> = Vec::new();
    for addr in &shared.dns_addrs {
        if let Err(e) = probe_dns(*addr).await {
            problems.push(format!("DNS {addr}: {e}"));
        }
    }
    for z in shared.zones.load().statuses() {
        if !z.serving {
            problems.push(format!(
                "zone {} is not served: {}",
                z.name,
                z.last_error.as_deref().unwrap_or("not loaded")
            ));
        }
    }
    if !shared.writer_available(Duration::from_secs(1)).await {
        problems.push("the writer is busy for over 1 s".into());
    }
    let ready = problems.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready, "problems": problems}))).into_response()
}

/// Asks the listener at `addr` for the root SOA over UDP (any reply will do: REFUSED is an
/// answer) and opens a TCP connection to it.
async fn probe_dns(addr: std::net::SocketAddr) -> Result<(), String> {
    let target = if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        std::net::SocketAddr::new(loopback, addr.port())
    } else {
        addr
    };
    let bind: std::net::SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let wait = Duration::from_secs(1);
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    socket.connect(target).await.map_err(|e| e.to_string())?;
    // ID 0x7264, no flags, one question: . SOA IN.
    let query = [0x72, 0x64, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1];
    socket.send(&query).await.map_err(|e| e.to_string())?;
    let mut reply = [0u8; 512];
    match tokio::time::timeout(wait, socket.recv(&mut reply)).await {
        Ok(Ok(n)) if n >= 2 && reply[..2] == query[..2] => {}
        Ok(Ok(_)) => return Err("UDP: a reply with another ID".into()),
        Ok(Err(e)) => return Err(format!("UDP: {e}")),
        Err(_) => return Err("UDP: no reply within 1 s".into()),
    }
    match tokio::time::timeout(wait, tokio::net::TcpStream::connect(target)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("TCP: {e}")),
        Err(_) => Err("TCP: no connection within 1 s".into()),
    }
}

async fn metrics(
    State(shared): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require_read_access(&shared, &headers)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            shared.refresh_transfer_metrics();
            shared.metrics.render()
        },
    ))
}

#[derive(Serialize)]
struct StatusBody<'a> {
    version: &'static str,
    uptime_seconds: u64,
    dns_listen: Vec<String>,
    zones_loaded: usize,
    zones_failing: usize,
    zones: &'a [ZoneStatus],
    /// Association files that did not load (`domain` → `file:line: reason`).
    association_errors: std::collections::BTreeMap<String, String>,
    /// Domains whose DKIM key cannot be used (they do not sign), and why.
    dkim_errors: std::collections::BTreeMap<String, String>,
    /// Zones whose DNSSEC keys cannot be used or whose policy cannot be followed, and why.
    dnssec_errors: std::collections::BTreeMap<String, String>,
    /// Associated domains by overall diagnosis status (`ok`, `pending`, `warning`, `error`).
    domains_by_status: std::collections::BTreeMap<&'static str, usize>,
    /// Per configured secondary: zones it is behind on, its largest lag, failed NOTIFYs.
    secondaries: Vec<crate::daemon::shared::SecondarySummary>,
    /// Web certificates by ACME, per domain: expiry, next order, failures and last error.
    certificates: Vec<crate::daemon::shared::CertificateStatus>,
}

async fn status(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = require_read_access(&shared, &headers) {
        return e.into_response();
    }
    let zones = shared.zones.load();
    let statuses = zones.statuses();
    Json(StatusBody {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: shared.started.elapsed().as_secs(),
        dns_listen: shared.dns_addrs.iter().map(ToString::to_string).collect(),
        zones_loaded: zones.len(),
        zones_failing: statuses.iter().filter(|s| s.last_error.is_some()).count(),
        zones: &statuses,
        association_errors: shared.associations.load().broken().clone(),
        dkim_errors: shared
            .dkim_errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default(),
        dnssec_errors: shared
            .dnssec_errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default(),
        domains_by_status: {
            let mut counts = std::collections::BTreeMap::new();
            for d in shared.diagnosis.all() {
                *counts.entry(d.overall.as_str()).or_insert(0) += 1;
            }
            counts
        },
        secondaries: shared.transfer_status.summary(),
        certificates: shared.acme_status(),
    })
    .into_response()
}

async fn reload(State(shared): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_token(&shared, &headers)?;
    match shared.reload().await {
        Ok(summary) => Ok(Json(summary).into_response()),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reload_failed",
            format!("cannot read the zones folder: {e}; still serving the previous zones"),
        )),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// Serves HTTP on `listener` until `stop` resolves, then lets the requests in flight end.
///
/// We run the accept loop ourselves rather than `axum::serve`, which has no read timeouts
/// and no connection cap, and logs every failed accept: here a connection beyond
/// `http.max_connections` is closed at once, headers must arrive within
/// `header_read_timeout_secs` (also the keep-alive idle limit), bodies within
/// `body_read_timeout_secs`, a connection serves at most `max_requests_per_connection`
/// requests, and accept errors (out of file descriptors) back off and are logged once per
/// interval.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: impl std::future::Future<Output = ()>,
) {
    use hyper::service::Service as _;

    let config = &shared.config.http;
    let metrics = shared.metrics.clone();
    let body_timeout = Duration::from_secs(config.body_read_timeout_secs.max(1));
    let max_requests = config.max_requests_per_connection.max(1);
    let policy = crate::accept::Policy {
        listener: "http",
        max_connections: config.max_connections,
        accept_error: Problem::HttpAcceptError,
        over_limit: Problem::HttpConnectionLimit,
        log_interval: Duration::from_secs(shared.config.log.summary_interval_secs),
        drain_within: None,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.header_read_timeout_secs.max(1)))
        .keep_alive(true);
    let app = hyper_util::service::TowerToHyperService::new(router(shared.clone()));
    crate::accept::accept_until(&listener, policy, &metrics.clone(), stop, |accepted| {
        let served = Arc::new(AtomicU64::new(0));
        let app = app.clone();
        let counted = metrics.clone();
        let service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let request = request.map(|body| {
                    axum::body::Body::new(DeadlineBody {
                        inner: body,
                        deadline: Box::pin(tokio::time::sleep(body_timeout)),
                        metrics: counted.clone(),
                    })
                });
                let last = served.fetch_add(1, Ordering::Relaxed) + 1 >= max_requests;
                let response = app.call(request);
                async move {
                    let mut response = response.await?;
                    if last {
                        response.headers_mut().insert(
                            header::CONNECTION,
                            axum::http::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
        let crate::accept::Connection {
            stream,
            permit,
            mut closing,
        } = accepted;
        let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            metrics.http_connections.inc();
            crate::accept::drive(connection, &mut closing, &metrics).await;
            metrics.http_connections.dec();
            drop(permit);
        });
    })
    .await;
}

/// A request body that fails once its deadline passes, so that a client trickling (or
/// withholding) a body cannot hold a connection and a handler for ever.
struct DeadlineBody {
    inner: hyper::body::Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl http_body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(axum::Error::new)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.metrics.problem(Problem::HttpTimeout);
            return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            )))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
