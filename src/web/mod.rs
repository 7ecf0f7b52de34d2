//! The public web listener: what mail clients and sending servers fetch over HTTP(S) for an
//! associated domain — Thunderbird autoconfig, Outlook autodiscover (POX and JSON v1.0) and
//! the MTA-STS policy — and, over plain HTTP only, the pending ACME HTTP-01 challenges.
//!
//! This module owns dispatching by `Host` (only associated domains answer; any other host
//! gets 404, counted, never logged per request; a challenge token only on the host it was
//! issued for, from [`challenge::ChallengeTokens`], which the daemon's orders fill), the
//! bounds on what a client may send (header bytes, body bytes, header and TLS handshake
//! time, connections) and its accept loops (plain and TLS). It knows nothing of the
//! daemon: it asks [`Sites`] (implemented by the composition root) which platform serves a
//! domain, and it never reads a file to answer a request. It must not change state.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::metrics::Metrics;
use crate::problems::Problem;
use crate::provision::platform::Platform;

pub mod challenge;
pub mod documents;
pub mod tls;

use documents::Address;

/// What the web listener serves for one associated domain.
#[derive(Debug, Clone)]
pub struct Site {
    /// The platform whose endpoints mail clients get (the association managing
    /// autoconfig, else the first one).
    pub clients: Platform,
    /// The MTA-STS policy text, when an association of the domain manages `mta-sts`.
    pub mta_sts_policy: Option<String>,
}

/// Which domains are associated, and with what: the daemon's associations and platforms
/// as the web listener sees them.
pub trait Sites: Send + Sync + 'static {
    /// The site of `domain` (lower case, no final dot), if it is associated.
    fn site(&self, domain: &str) -> Option<Site>;
}

/// Bounds on what one client may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// At most one accept-error log line per this interval (`log.summary_interval_secs`).
    pub log_interval: Duration,
}

impl Limits {
    pub fn from_config(c: &crate::config::WebConfig, log: &crate::config::LogConfig) -> Self {
        Self {
            max_body_bytes: c.max_body_bytes,
            header_read_timeout: Duration::from_secs(c.header_read_timeout_secs.max(1)),
            max_connections: c.max_connections.max(1),
            log_interval: Duration::from_secs(log.summary_interval_secs.max(1)),
        }
    }
}

/// Whether a request came over TLS (set by the accept loop, never by the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OverTls(bool);

struct WebState {
    sites: Arc<dyn Sites>,
    challenges: Arc<challenge::ChallengeTokens>,
    metrics: Arc<Metrics>,
    limits: Limits,
}

/// The router of the web listener: one handler that dispatches on host and path itself,
/// so that nothing but the bounded `document` label is ever recorded. `challenges`: the
/// pending HTTP-01 tokens, answered over plain HTTP.
pub fn router(
    sites: Arc<dyn Sites>,
    challenges: Arc<challenge::ChallengeTokens>,
    metrics: Arc<Metrics>,
    limits: Limits,
) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(Arc::new(WebState {
            sites,
            challenges,
            metrics,
            limits,
        }))
}

/// What the host names: `autoconfig.<d>`, `autodiscover.<d>`, `mta-sts.<d>` or `<d>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostKind {
    Autoconfig,
    Autodiscover,
    MtaSts,
    Bare,
}

/// The host of a request: lower case, no port, no final dot; `None` when absent or not a
/// host name.
fn host_name(request: &Request) -> Option<String> {
    let raw = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())?;
    let name = match raw.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => raw,
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty()
        || name.len() > 253
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return None;
    }
    Some(name)
}

/// The host of a request split into its kind and domain.
fn host_of(request: &Request) -> Option<(HostKind, String)> {
    let name = host_name(request)?;
    for (prefix, kind) in [
        ("autoconfig.", HostKind::Autoconfig),
        ("autodiscover.", HostKind::Autodiscover),
        ("mta-sts.", HostKind::MtaSts),
    ] {
        if let Some(domain) = name.strip_prefix(prefix) {
            return Some((kind, domain.to_string()));
        }
    }
    Some((HostKind::Bare, name))
}

/// The documents, as labels of `mailzone_web_requests_total`.
#[derive(Debug, Clone, Copy)]
enum Document {
    Autoconfig,
    Autodiscover,
    AutodiscoverJson,
    MtaSts,
    AcmeChallenge,
    UnknownHost,
    NotFound,
}

impl Document {
    fn label(self) -> &'static str {
        match self {
            Self::Autoconfig => "autoconfig",
            Self::Autodiscover => "autodiscover",
            Self::AutodiscoverJson => "autodiscover_json",
            Self::MtaSts => "mta_sts",
            Self::AcmeChallenge => "acme_challenge",
            Self::UnknownHost => "unknown_host",
            Self::NotFound => "not_found",
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn typed(content_type: &'static str, body: String) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

async fn handle(State(state): State<Arc<WebState>>, request: Request) -> Response {
    let (document, response) = answer(&state, request).await;
    state
        .metrics
        .web_requests
        .with_label_values(&[document.label(), response.status().as_str()])
        .inc();
    response
}

/// An HTTP-01 challenge (RFC 8555 §8.3): the key authorization as text/plain, only over
/// plain HTTP, only on the host the token is pending for; anything else is the same 404.
fn acme_challenge(state: &WebState, request: &Request, token: &str) -> Response {
    let over_tls = request.extensions().get::<OverTls>().is_some_and(|t| t.0);
    let method = request.method();
    let found = if over_tls || (method != Method::GET && method != Method::HEAD) {
        None
    } else {
        host_name(request).and_then(|host| state.challenges.answer(&host, token))
    };
    match found {
        Some(key_authorization) => typed("text/plain", key_authorization),
        None => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn answer(state: &WebState, request: Request) -> (Document, Response) {
    let not_found = || text(StatusCode::NOT_FOUND, "not found\n");
    // Before the host's site: the token is case-sensitive, and its host is checked itself.
    if let Some(token) = request.uri().path().strip_prefix(challenge::PATH) {
        return (
            Document::AcmeChallenge,
            acme_challenge(state, &request, token),
        );
    }
    let Some((kind, domain)) = host_of(&request) else {
        return (Document::UnknownHost, not_found());
    };
    let Some(site) = state.sites.site(&domain) else {
        return (Document::UnknownHost, not_found());
    };
    let over_tls = request.extensions().get::<OverTls>().is_some_and(|t| t.0);
    let path = request.uri().path().to_ascii_lowercase();
    let method = request.method().clone();
    let document = match (kind, path.as_str()) {
        (HostKind::Autoconfig | HostKind::Bare, "/mail/config-v1.1.xml")
        | (HostKind::Autoconfig | HostKind::Bare, "/.well-known/autoconfig/mail/config-v1.1.xml") => {
            Document::Autoconfig
        }
        (HostKind::Autodiscover | HostKind::Bare, "/autodiscover/autodiscover.xml") => {
            Document::Autodiscover
        }
        (HostKind::Autodiscover | HostKind::Bare, p)
            if p.starts_with("/autodiscover/autodiscover.json/v1.0/") =>
        {
            Document::AutodiscoverJson
        }
        // RFC 8461 §3.3: the policy is only ever served over HTTPS.
        (HostKind::MtaSts, "/.well-known/mta-sts.txt") if over_tls => Document::MtaSts,
        _ => return (Document::NotFound, not_found()),
    };
    let response = match document {
        Document::Autoconfig => {
            if method != Method::GET && method != Method::HEAD {
                return (document, text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n"));
            }
            // Thunderbird sends the address; when it does, it must be of this domain.
            let address = query_param(request.uri().query(), "emailaddress");
            if let Some(a) = address {
                match Address::parse(&a) {
                    Some(a) if a.domain == domain => {}
                    Some(_) => return (document, not_found()),
                    None => {
                        return (
                            document,
                            text(StatusCode::BAD_REQUEST, "emailaddress is not an address\n"),
                        );
                    }
                }
            }
            typed(
                "application/xml; charset=utf-8",
                documents::autoconfig(&domain, &site.clients),
            )
        }
        Document::Autodiscover => {
            if method != Method::POST {
                return (
                    document,
                    text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n"),
                );
            }
            let body = match read_body(request.into_body(), state.limits).await {
                Ok(b) => b,
                Err(status) => return (document, text(status, "request body refused\n")),
            };
            match documents::read_request(&body) {
                Ok(a) if a.domain == domain => typed(
                    "text/xml; charset=utf-8",
                    documents::autodiscover_response(&a, &site.clients),
                ),
                Ok(_) => return (document, not_found()),
                Err(e) => {
                    let mut r = typed(
                        "text/xml; charset=utf-8",
                        documents::autodiscover_error(&e.to_string()),
                    );
                    *r.status_mut() = StatusCode::BAD_REQUEST;
                    r
                }
            }
        }
        Document::AutodiscoverJson => {
            let raw = &request.uri().path()["/autodiscover/autodiscover.json/v1.0/".len()..];
            let protocol = query_param(request.uri().query(), "protocol").unwrap_or_default();
            let address = percent_decode(raw).and_then(|a| Address::parse(&a));
            match address {
                Some(a) if a.domain == domain => {
                    if protocol.eq_ignore_ascii_case("autodiscoverv1") {
                        let url =
                            format!("https://autodiscover.{domain}/autodiscover/autodiscover.xml");
                        typed(
                            "application/json; charset=utf-8",
                            serde_json::json!({"Protocol": "AutodiscoverV1", "Url": url})
                                .to_string(),
                        )
                    } else {
                        // Exchange's answer for a protocol it does not offer.
                        let body = serde_json::json!({
                            "ErrorCode": "InvalidProtocol",
                            "ErrorMessage": "The given protocol value is invalid. Supported values are 'AutodiscoverV1'"
                        });
                        let mut r = typed("application/json; charset=utf-8", body.to_string());
                        *r.status_mut() = StatusCode::BAD_REQUEST;
                        r
                    }
                }
                Some(_) => not_found(),
                None => text(StatusCode::BAD_REQUEST, "not an e-mail address\n"),
            }
        }
        Document::MtaSts => {
            if method != Method::GET && method != Method::HEAD {
                return (document, text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n"));
            }
            match site.mta_sts_policy {
                // RFC 8461 §3.2: media type text/plain.
                Some(policy) => typed("text/plain", policy),
                None => not_found(),
            }
        }
        Document::AcmeChallenge | Document::UnknownHost | Document::NotFound => not_found(),
    };
    (document, response)
}

/// A request body of at most `max_body_bytes`: 413 beyond, 408 when it does not arrive
/// within the header timeout.
async fn read_body(body: Body, limits: Limits) -> Result<axum::body::Bytes, StatusCode> {
    match tokio::time::timeout(
        limits.header_read_timeout,
        axum::body::to_bytes(body, limits.max_body_bytes),
    )
    .await
    {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(StatusCode::PAYLOAD_TOO_LARGE),
        Err(_) => Err(StatusCode::REQUEST_TIMEOUT),
    }
}

/// The first value of a query parameter (name compared without case), percent-decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k.eq_ignore_ascii_case(name)
            .then(|| percent_decode(&v.replace('+', " ")))
            .flatten()
    })
}

/// `%XX` decoding; `None` for a bad escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Serves the web router on `listener` until `stop` resolves: plain HTTP, or TLS with the
/// certificates of `tls`. A connection beyond `max_connections` is closed at once; the TLS
/// handshake and each request's headers must arrive within `header_read_timeout`; request
/// headers are bounded by hyper's smallest read buffer (8 KiB: more is a 431). Problems
/// are counted, never logged per connection.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<tls::CertStore>>,
    app: Router,
    metrics: Arc<Metrics>,
    limits: Limits,
    stop: impl std::future::Future<Output = ()>,
) {
    use hyper::service::Service as _;

    let acceptor = tls.map(|store| tokio_rustls::TlsAcceptor::from(store.server_config()));
    let policy = crate::accept::Policy {
        listener: "web",
        max_connections: limits.max_connections,
        accept_error: Problem::WebAcceptError,
        over_limit: Problem::WebConnectionLimit,
        log_interval: limits.log_interval,
        drain_within: Some(Duration::from_secs(5)),
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(8192)
        .keep_alive(true);
    let app = hyper_util::service::TowerToHyperService::new(app);
    let over_tls = OverTls(acceptor.is_some());
    crate::accept::accept_until(&listener, policy, &metrics.clone(), stop, |accepted| {
        let crate::accept::Connection {
            stream,
            permit,
            mut closing,
        } = accepted;
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(over_tls);
                app.call(request.map(Body::new))
            },
        );
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => {
                    let c = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    crate::accept::drive(c, &mut closing, &metrics).await
                }
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(
                        limits.header_read_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        _ => {
                            metrics.problem(Problem::WebTlsHandshake);
                            return;
                        }
                    };
                    let c = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                    crate::accept::drive(c, &mut closing, &metrics).await
                }
            }
        });
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_found_without_case_and_decoded() {
        assert_eq!(
            query_param(Some("x=1&EmailAddress=jane%40shop.test"), "emailaddress").as_deref(),
            Some("jane@shop.test")
        );
        assert_eq!(query_param(Some("a=%zz"), "a"), None);
        assert_eq!(query_param(None, "a"), None);
    }
}
