//! The HTTPS side of a diagnosis: fetching a domain's MTA-STS policy, and its autoconfig and
//! autodiscover documents, the way a sending server or a mail client would.
//!
//! This module owns the small HTTPS client of diagnosis: the host is resolved through the
//! prober's resolver (RD=1, CNAMEs followed), the connection goes to `diagnosis.web_port`,
//! the certificate must be valid for the host under `diagnosis.web_ca_file`, the reply is
//! bounded (64 KiB, the prober's timeout per step). It records what it saw and concludes
//! nothing: [`super::judge`] does.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::{Name, RData, RecordType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::probe::Prober;

/// Largest reply read (RFC 8461 §3.3 lets senders stop at 64 KiB).
const MAX_REPLY: usize = 64 * 1024;

/// What the HTTPS checks saw, by document; `None` when not fetched.
#[derive(Debug, Clone, Default)]
pub struct WebSeen {
    /// The MTA-STS policy body (status 200, `text/plain`), or why it could not be had.
    pub mta_sts_policy: Option<Result<String, String>>,
    /// The Thunderbird autoconfig document, or why not.
    pub autoconfig: Option<Result<String, String>>,
    /// The Outlook autodiscover POX answer for a probe address, or why not.
    pub autodiscover: Option<Result<String, String>>,
}

/// The HTTPS client settings: port, trusted roots, time per step.
#[derive(Clone)]
pub struct WebClient {
    pub port: u16,
    roots: Result<Arc<rustls::ClientConfig>, String>,
    timeout: Duration,
}

impl std::fmt::Debug for WebClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebClient")
            .field("port", &self.port)
            .finish()
    }
}

impl WebClient {
    /// The client of `diagnosis:` (the CA file is read once here; an unreadable one makes
    /// every HTTPS check report it).
    pub fn new(config: &crate::config::DiagnosisConfig) -> Self {
        let roots = (|| {
            let pem = std::fs::read(&config.web_ca_file)
                .map_err(|e| format!("{}: cannot read: {e}", config.web_ca_file.display()))?;
            let mut store = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(format!(
                    "{}: no usable certificate authority",
                    config.web_ca_file.display()
                ));
            }
            // ring, as the listener; see crate::web::tls.
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(store)
                .with_no_client_auth();
            Ok(Arc::new(cfg))
        })();
        Self {
            port: config.web_port,
            roots,
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
        }
    }

    /// `method path` on `https://host/`, with `body`; the status, the content type and the
    /// body (at most 64 KiB), or why not (resolution, connection, certificate, timeout).
    pub async fn fetch(
        &self,
        prober: &Prober,
        host: &str,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, String, String), String> {
        let config = self.roots.clone()?;
        let ip = resolve(prober, host).await?;
        let addr = SocketAddr::new(ip, self.port);
        let step = |what: &'static str| move |_| format!("{what} {addr}: no answer in time");
        let tcp = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(step("connecting to"))?
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
        let mut tls = tokio::time::timeout(
            self.timeout,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .map_err(step("TLS with"))?
        .map_err(|e| format!("TLS with {host} ({addr}): {e}"))?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mailzone-diagnosis\r\nConnection: close\r\n"
        );
        if method == "POST" {
            request.push_str(&format!(
                "Content-Type: text/xml\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(body);
        let exchange = async {
            tls.write_all(request.as_bytes()).await?;
            let mut raw = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        raw.extend_from_slice(&buf[..n]);
                        if raw.len() > MAX_REPLY {
                            break;
                        }
                    }
                    // A server closing without close_notify after Connection: close.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(raw)
        };
        let raw = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(step("reading from"))?
            .map_err(|e| format!("reading from {host}: {e}"))?;
        if raw.len() > MAX_REPLY {
            return Err(format!("the reply of {host} is over 64 KiB"));
        }
        parse(&raw).ok_or_else(|| format!("{host} did not answer HTTP"))
    }
}

/// (status, content type, body) of a raw HTTP/1.1 response read to its close.
fn parse(raw: &[u8]) -> Option<(u16, String, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut content_type = String::new();
    let mut length: Option<usize> = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-type") {
                content_type = v.trim().to_string();
            } else if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok();
            }
        }
    }
    let body = match length {
        Some(n) if n <= body.len() => body[..n].to_string(),
        _ => body.to_string(),
    };
    Some((status, content_type, body))
}

/// The first address of `host` through the prober's resolver (RD=1), following CNAMEs.
async fn resolve(prober: &Prober, host: &str) -> Result<IpAddr, String> {
    let mut name = Name::from_ascii(format!("{}.", host.trim_end_matches('.')))
        .map_err(|e| format!("{host}: {e}"))?;
    for _ in 0..8 {
        let m = prober
            .query(prober.resolver, &name, RecordType::A, true)
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?;
        let mut next = None;
        for r in m.answers.iter() {
            match &r.data {
                RData::A(a) => return Ok(IpAddr::V4(a.0)),
                RData::CNAME(c) => next = Some(c.0.clone()),
                _ => {}
            }
        }
        name = next.ok_or_else(|| format!("{host} has no address"))?;
    }
    Err(format!("{host}: CNAME chain too long"))
}

/// Fetches what the association's families publish over HTTPS.
pub async fn look(
    prober: &Prober,
    client: &WebClient,
    subject: &super::gather::Subject<'_>,
    autoconfig_http: bool,
) -> WebSeen {
    let domain = subject.domain().trim_end_matches('.');
    let records = &subject.association.records;
    let mut seen = WebSeen::default();
    let status_ok = |r: Result<(u16, String, String), String>, what: &str| match r {
        Ok((200, ct, body)) => Ok((ct, body)),
        Ok((status, _, _)) => Err(format!("{what} answered HTTP {status}")),
        Err(e) => Err(e),
    };
    if records.mta_sts {
        let host = format!("mta-sts.{domain}");
        let r = client
            .fetch(prober, &host, "GET", "/.well-known/mta-sts.txt", "")
            .await;
        seen.mta_sts_policy = Some(status_ok(r, &host).and_then(|(ct, body)| {
            // RFC 8461 §3.3: the media type must be text/plain.
            if ct
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/plain"))
            {
                Ok(body)
            } else {
                Err(format!(
                    "{host} serves the policy as {ct:?}, not text/plain"
                ))
            }
        }));
    }
    if records.autoconfig && autoconfig_http {
        let host = format!("autoconfig.{domain}");
        let path = format!("/mail/config-v1.1.xml?emailaddress=postmaster%40{domain}");
        let r = client.fetch(prober, &host, "GET", &path, "").await;
        seen.autoconfig = Some(status_ok(r, &host).map(|(_, b)| b));
        let host = format!("autodiscover.{domain}");
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"{}\"><Request><EMailAddress>postmaster@{domain}</EMailAddress><AcceptableResponseSchema>{}</AcceptableResponseSchema></Request></Autodiscover>",
            crate::web::documents::REQUEST_SCHEMA,
            crate::web::documents::RESPONSE_SCHEMA
        );
        let r = client
            .fetch(
                prober,
                &host,
                "POST",
                "/autodiscover/autodiscover.xml",
                &body,
            )
            .await;
        seen.autodiscover = Some(status_ok(r, &host).map(|(_, b)| b));
    }
    seen
}
