//! Asking a domain's own nameservers, as a careful DNS engineer would.
//!
//! This module owns discovery (the NS set and each nameserver's addresses, through the
//! configured resolver) and direct queries to each nameserver address with RD=0, over UDP with
//! the fallback to TCP on truncation. It reports what each server said, including the AA bit;
//! judging the answers is the checks' job.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    #[error("{server}: no answer within {timeout_ms} ms")]
    Timeout { server: SocketAddr, timeout_ms: u64 },
    #[error("{server}: {message}")]
    Io { server: SocketAddr, message: String },
    #[error("{0} has no NS records")]
    NoNameservers(String),
    #[error("{name}: the resolver answered {rcode}")]
    Rcode { name: String, rcode: ResponseCode },
}

/// One nameserver of a domain and its addresses.
#[derive(Debug, Clone)]
pub struct Nameserver {
    pub name: Name,
    pub addresses: Vec<SocketAddr>,
}

/// Sends the diagnosis queries.
#[derive(Debug, Clone)]
pub struct Prober {
    pub resolver: SocketAddr,
    /// The port nameservers are asked on (53, or a loopback port in tests).
    pub port: u16,
    pub timeout: Duration,
}

impl Prober {
    /// A query to `server`; `recursion` sets RD (only for the resolver).
    pub async fn query(
        &self,
        server: SocketAddr,
        name: &Name,
        rtype: RecordType,
        recursion: bool,
    ) -> Result<Message, ProbeError> {
        let mut q = Message::new(random_id(), MessageType::Query, OpCode::Query);
        q.metadata.recursion_desired = recursion;
        q.add_query(Query::query(name.clone(), rtype));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        q.set_edns(edns);
        let bytes = q.to_vec().map_err(|e| ProbeError::Io {
            server,
            message: e.to_string(),
        })?;
        let reply = tokio::time::timeout(self.timeout, self.udp(server, &bytes, q.metadata.id))
            .await
            .map_err(|_| self.timed_out(server))??;
        if !reply.metadata.truncation {
            return Ok(reply);
        }
        tokio::time::timeout(self.timeout, self.tcp(server, &bytes))
            .await
            .map_err(|_| self.timed_out(server))?
    }

    fn timed_out(&self, server: SocketAddr) -> ProbeError {
        ProbeError::Timeout {
            server,
            timeout_ms: self.timeout.as_millis() as u64,
        }
    }

    async fn udp(&self, server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, ProbeError> {
        let io = |e: std::io::Error| ProbeError::Io {
            server,
            message: e.to_string(),
        };
        let bind: SocketAddr = if server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(bind).await.map_err(io)?;
        socket.connect(server).await.map_err(io)?;
        socket.send(bytes).await.map_err(io)?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await.map_err(io)?;
            // Ignore stray datagrams: only the answer to our question counts.
            if let Ok(m) = Message::from_vec(&buf[..n])
                && m.metadata.id == id
                && m.metadata.message_type == MessageType::Response
            {
                return Ok(m);
            }
        }
    }

    async fn tcp(&self, server: SocketAddr, bytes: &[u8]) -> Result<Message, ProbeError> {
        let io = |e: std::io::Error| ProbeError::Io {
            server,
            message: e.to_string(),
        };
        let mut s = TcpStream::connect(server).await.map_err(io)?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(bytes);
        s.write_all(&framed).await.map_err(io)?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.map_err(io)?;
        let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut body).await.map_err(io)?;
        Message::from_vec(&body).map_err(|e| ProbeError::Io {
            server,
            message: e.to_string(),
        })
    }

    /// The domain's nameservers and their addresses, through the resolver.
    pub async fn nameservers(&self, domain: &Name) -> Result<Vec<Nameserver>, ProbeError> {
        let reply = self
            .query(self.resolver, domain, RecordType::NS, true)
            .await?;
        if reply.metadata.response_code != ResponseCode::NoError {
            return Err(ProbeError::Rcode {
                name: domain.to_ascii(),
                rcode: reply.metadata.response_code,
            });
        }
        let names: Vec<Name> = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(ns) => Some(ns.0.clone()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Err(ProbeError::NoNameservers(domain.to_ascii()));
        }
        let mut out = Vec::new();
        for name in names {
            let mut addresses = Vec::new();
            for rtype in [RecordType::A, RecordType::AAAA] {
                if let Ok(r) = self.query(self.resolver, &name, rtype, true).await {
                    addresses.extend(r.answers.iter().filter_map(|a| match &a.data {
                        RData::A(a) => Some(SocketAddr::new(IpAddr::V4(a.0), self.port)),
                        RData::AAAA(a) => Some(SocketAddr::new(IpAddr::V6(a.0), self.port)),
                        _ => None,
                    }));
                }
            }
            out.push(Nameserver { name, addresses });
        }
        Ok(out)
    }
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u16::from_be_bytes(b)
}

/// The TXT values (strings joined) of an authoritative answer.
pub fn txt_values(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}
