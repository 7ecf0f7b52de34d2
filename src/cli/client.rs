//! A small blocking HTTP/1.1 client for the daemon's loopback API.
//!
//! The API is plain HTTP on a local address, one request per connection, so a few lines over
//! `std::net::TcpStream` do the job without pulling an HTTP client stack into the binary.
//! It owns turning the API's `{"error": {...}}` replies into [`ClientError::Api`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the daemon at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("bad reply from the daemon: {0}")]
    Reply(String),
    #[error("{status} {code}: {message}{}", field.as_ref().map(|f| format!(" (field {f})")).unwrap_or_default())]
    Api {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
}

pub struct ApiClient {
    addr: SocketAddr,
    token: String,
}

impl ApiClient {
    pub fn new(addr: SocketAddr, token: String) -> Self {
        Self { addr, token }
    }

    /// Sends a request with an optional JSON body; returns the JSON reply (null when empty).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (_, text) = self.exchange(method, path, body)?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ClientError::Reply(e.to_string()))
    }

    /// Sends a request; returns the body as text.
    pub fn request_text(&self, method: &str, path: &str) -> Result<String, ClientError> {
        self.exchange(method, path, None).map(|(_, t)| t)
    }

    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), ClientError> {
        let connect = |source| ClientError::Connect {
            addr: self.addr,
            source,
        };
        let mut stream =
            TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).map_err(connect)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(connect)?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        );
        stream.write_all(request.as_bytes()).map_err(connect)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(connect)?;
        let (status, text) = parse_response(&raw)?;
        if status >= 400 {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let e = &v["error"];
            return Err(ClientError::Api {
                status,
                code: e["code"].as_str().unwrap_or("error").to_string(),
                message: e["message"].as_str().unwrap_or(text.trim()).to_string(),
                field: e["field"].as_str().map(str::to_string),
            });
        }
        Ok((status, text))
    }
}

/// Splits a raw HTTP/1.1 response into its status and its (de-chunked) body.
pub fn parse_response(raw: &[u8]) -> Result<(u16, String), ClientError> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ClientError::Reply("no header end".into()))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Reply("no status".into()))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}
