//! The HTTP client the ACME protocol runs on: hyper's HTTP/1.1 client over rustls (ring),
//! trusting the configured PEM roots only.
//!
//! This module owns connecting, TLS and bounding what a directory may send (time and size).
//! It must not know the ACME protocol (instant-acme does) nor any zone. A connection per
//! request: an order is a handful of requests, and no pool means no idle sockets to manage.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// A directory's answer larger than this is refused (a certificate chain is a few KiB).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Why the client could not be made (which file).
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not PEM certificates: {reason}")]
    Invalid { path: String, reason: String },
    #[error("no trusted root could be read from {0}")]
    Empty(String),
}

/// An ACME HTTP client trusting the roots of the given PEM files.
#[derive(Clone)]
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

fn request_error(message: impl Into<String>) -> instant_acme::Error {
    instant_acme::Error::Other(message.into().into())
}

impl Client {
    /// `files`: the system bundle and any extra roots; a missing file is skipped, but at
    /// least one root must be read.
    pub fn new(files: &[&Path], timeout: Duration) -> Result<Self, TrustError> {
        let mut roots = rustls::RootCertStore::empty();
        for file in files {
            let bytes = match std::fs::read(file) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(TrustError::Read {
                        path: file.display().to_string(),
                        source,
                    });
                }
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| TrustError::Invalid {
                    path: file.display().to_string(),
                    reason: e.to_string(),
                })?;
            roots.add_parsable_certificates(certs);
        }
        if roots.is_empty() {
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            return Err(TrustError::Empty(names.join(", ")));
        }
        // ring, like the rest of the crate; see web::tls for why the deprecation is allowed.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TrustError::Invalid {
                path: "(TLS versions)".into(),
                reason: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    async fn send(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Result<BytesResponse, instant_acme::Error> {
        let uri = req.uri().clone();
        if uri.scheme_str() != Some("https") {
            return Err(request_error(format!("{uri}: only https:// is used")));
        }
        let host = uri
            .host()
            .ok_or_else(|| request_error(format!("{uri}: no host")))?
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        // `[::1]` in a URI is `::1` to connect to and to verify.
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|e| request_error(format!("{host}:{port}: cannot connect: {e}")))?;
        let name = ServerName::try_from(bare.clone())
            .map_err(|e| request_error(format!("{host}: {e}")))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| request_error(format!("{host}:{port}: TLS: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| request_error(format!("{host}:{port}: HTTP: {e}")))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        // Origin form on the request line, the authority in Host (RFC 9112 §3.2).
        let (mut parts, body) = req.into_parts();
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = path
            .parse()
            .map_err(|e| request_error(format!("{uri}: {e}")))?;
        let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
        if let Ok(value) = hyper::header::HeaderValue::from_str(&authority) {
            parts.headers.insert(hyper::header::HOST, value);
        }
        let response = sender
            .send_request(Request::from_parts(parts, body))
            .await
            .map_err(|e| request_error(format!("{uri}: {e}")))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| request_error(format!("{uri}: reading the answer: {e}")))?
            .to_bytes();
        driver.abort();
        Ok(BytesResponse::from(hyper::Response::from_parts(
            parts,
            Full::new(body),
        )))
    }
}

impl HttpClient for Client {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.clone();
        Box::pin(async move {
            let uri = req.uri().to_string();
            match tokio::time::timeout(client.timeout, client.send(req)).await {
                Ok(r) => r,
                Err(_) => Err(request_error(format!(
                    "{uri}: no answer within {} s",
                    client.timeout.as_secs()
                ))),
            }
        })
    }
}
