//! Asking a domain's own nameservers, as a careful DNS engineer would.
//!
//! This module owns the two DNS paths of the diagnosis and of `mailzone dkim verify`:
//! discovery (the NS set and each nameserver's addresses) through hickory-resolver (system
//! configuration by default, every configured resolver tried, retries, a TTL-bounded cache),
//! and the one client for direct queries (RD=0 to each nameserver address, RD=1 to the
//! resolver for SPF and DKIM keys) over UDP with the fallback to TCP on truncation. That
//! client accepts a reply only from the address asked, with our ID and our question, and
//! retries once on timeout. It reports what each server said, including the AA bit; judging
//! the answers is the judges' job.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
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
    #[error("{name}: {message}")]
    Resolver { name: String, message: String },
}

/// One nameserver of a domain and its addresses.
#[derive(Debug, Clone)]
pub struct Nameserver {
    pub name: Name,
    pub addresses: Vec<SocketAddr>,
}

/// Sends the diagnosis queries.
#[derive(Clone)]
pub struct Prober {
    /// Where recursive (RD=1) queries of our own client go: SPF includes, DMARC report
    /// authorisations, DKIM keys for `dkim verify`.
    pub resolver: SocketAddr,
    /// The port nameservers are asked on (53, or a loopback port in tests).
    pub port: u16,
    /// One attempt of one query.
    pub timeout: Duration,
    /// A whole domain's diagnosis, whatever the number of unanswering servers.
    pub budget: Duration,
    /// The HTTPS client of the web checks (MTA-STS policy, autoconfig).
    pub web: super::web::WebClient,
    /// Whether autoconfig and autodiscover are fetched over HTTPS too.
    pub check_autoconfig_http: bool,
    discovery: Arc<TokioResolver>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("resolver", &self.resolver)
            .field("port", &self.port)
            .field("timeout", &self.timeout)
            .field("budget", &self.budget)
            .finish()
    }
}

/// A resolver's background connections belong to the runtime that built it: a daemon started
/// in another runtime (several in one test process, or after a restart in-process) must not
/// reuse one whose runtime is shutting down, so the runtime is part of the key.
type ResolverKey = (Option<SocketAddr>, u64, Option<tokio::runtime::Id>);
/// A configuration, its resolver, and where that resolver's RD=1 queries of ours go.
type CachedResolver = (ResolverKey, Arc<TokioResolver>, SocketAddr);

/// One discovery resolver per configuration, so its cache outlives a run.
fn discovery_resolver(
    resolver: Option<SocketAddr>,
    timeout: Duration,
) -> Option<(Arc<TokioResolver>, SocketAddr)> {
    static CACHE: OnceLock<Mutex<Vec<CachedResolver>>> = OnceLock::new();
    let runtime = tokio::runtime::Handle::try_current().ok().map(|h| h.id());
    let key = (resolver, timeout.as_millis() as u64, runtime);
    let cache = CACHE.get_or_init(Default::default);
    if let Ok(c) = cache.lock()
        && let Some((_, r, a)) = c.iter().find(|(k, _, _)| *k == key)
    {
        return Some((r.clone(), *a));
    }
    let (config, mut opts, first) = match resolver {
        // An explicit resolver replaces the system's entirely (tests: never the system's).
        Some(addr) => {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in ns.connections.iter_mut() {
                c.port = addr.port();
            }
            let mut opts = ResolverOpts::default();
            opts.use_hosts_file = ResolveHosts::Never;
            (ResolverConfig::from_name_servers(vec![ns]), opts, addr)
        }
        None => {
            let (config, opts) = hickory_resolver::system_conf::read_system_conf().ok()?;
            let first = config.name_servers().first().map(|ns| {
                let port = ns.connections.first().map_or(53, |c| c.port);
                SocketAddr::new(ns.ip, port)
            })?;
            (config, opts, first)
        }
    };
    opts.timeout = timeout;
    opts.attempts = 2;
    // Nameserver hosts are shared by many domains and stay cached; a domain's own NS set is
    // asked again at its next run anyway. The default 8,192 answers cost ≈ 8 MiB more peak
    // memory at 10,000 domains (`cargo bench --bench diagnosis`).
    opts.cache_size = 1024;
    let built =
        hickory_resolver::Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .ok()?;
    let built = Arc::new(built);
    if let Ok(mut c) = cache.lock() {
        // Configurations are few (one per daemon, a few in tests); keep the list short anyway.
        if c.len() >= 64 {
            c.remove(0);
        }
        c.push((key, built.clone(), first));
    }
    Some((built, first))
}

impl Prober {
    /// A prober for `diagnosis:`; `None` when no resolver is configured or found.
    pub fn new(config: &crate::config::DiagnosisConfig) -> Option<Self> {
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let (discovery, resolver) = discovery_resolver(config.resolver, timeout)?;
        Some(Prober {
            resolver,
            port: config.port,
            timeout,
            budget: Duration::from_millis(config.budget_ms.max(1)),
            web: super::web::WebClient::new(config),
            check_autoconfig_http: config.check_autoconfig_http,
            discovery,
        })
    }

    /// A query to `server`; `recursion` sets RD (only for the resolver). Retried once when
    /// no acceptable reply arrives in time.
    pub async fn query(
        &self,
        server: SocketAddr,
        name: &Name,
        rtype: RecordType,
        recursion: bool,
    ) -> Result<Message, ProbeError> {
        self.query_with(server, name, rtype, recursion, false).await
    }

    /// A query to `server` with the DO bit (RFC 3225): the answer carries its RRSIGs.
    /// RD=0, for a nameserver of the domain or of its parent, asked directly.
    pub async fn query_dnssec(
        &self,
        server: SocketAddr,
        name: &Name,
        rtype: RecordType,
    ) -> Result<Message, ProbeError> {
        self.query_with(server, name, rtype, false, true).await
    }

    async fn query_with(
        &self,
        server: SocketAddr,
        name: &Name,
        rtype: RecordType,
        recursion: bool,
        dnssec_ok: bool,
    ) -> Result<Message, ProbeError> {
        match self
            .query_once(server, name, rtype, recursion, dnssec_ok)
            .await
        {
            Err(ProbeError::Timeout { .. }) => {
                self.query_once(server, name, rtype, recursion, dnssec_ok)
                    .await
            }
            other => other,
        }
    }

    async fn query_once(
        &self,
        server: SocketAddr,
        name: &Name,
        rtype: RecordType,
        recursion: bool,
        dnssec_ok: bool,
    ) -> Result<Message, ProbeError> {
        let mut q = Message::new(random_id(), MessageType::Query, OpCode::Query);
        q.metadata.recursion_desired = recursion;
        let question = Query::query(name.clone(), rtype);
        q.add_query(question.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(dnssec_ok);
        q.set_edns(edns);
        let bytes = q.to_vec().map_err(|e| ProbeError::Io {
            server,
            message: e.to_string(),
        })?;
        let id = q.metadata.id;
        let reply = tokio::time::timeout(self.timeout, self.udp(server, &bytes, id, &question))
            .await
            .map_err(|_| self.timed_out(server))??;
        if !reply.metadata.truncation {
            return Ok(reply);
        }
        tokio::time::timeout(self.timeout, self.tcp(server, &bytes, id, &question))
            .await
            .map_err(|_| self.timed_out(server))?
    }

    fn timed_out(&self, server: SocketAddr) -> ProbeError {
        ProbeError::Timeout {
            server,
            timeout_ms: self.timeout.as_millis() as u64,
        }
    }

    async fn udp(
        &self,
        server: SocketAddr,
        bytes: &[u8],
        id: u16,
        question: &Query,
    ) -> Result<Message, ProbeError> {
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
        // A connected socket: the kernel drops datagrams from any other source (and reports
        // an ICMP refusal at once instead of waiting for the timeout).
        socket.connect(server).await.map_err(io)?;
        socket.send(bytes).await.map_err(io)?;
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.map_err(io)?;
            // Only the answer to our question, from the server asked, counts: anything else
            // may be spoofed and is ignored.
            if from == server
                && let Ok(m) = Message::from_vec(&buf[..n])
                && answers(&m, id, question)
            {
                return Ok(m);
            }
        }
    }

    async fn tcp(
        &self,
        server: SocketAddr,
        bytes: &[u8],
        id: u16,
        question: &Query,
    ) -> Result<Message, ProbeError> {
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
        let m = Message::from_vec(&body).map_err(|e| ProbeError::Io {
            server,
            message: e.to_string(),
        })?;
        if !answers(&m, id, question) {
            return Err(ProbeError::Io {
                server,
                message: "the reply does not answer our question".into(),
            });
        }
        Ok(m)
    }

    /// The domain's nameservers and their addresses, through hickory-resolver.
    pub async fn nameservers(&self, domain: &Name) -> Result<Vec<Nameserver>, ProbeError> {
        let mut fqdn = domain.clone();
        fqdn.set_fqdn(true);
        let lookup = self
            .discovery
            .lookup(fqdn.clone(), RecordType::NS)
            .await
            .map_err(|e| ProbeError::Resolver {
                name: fqdn.to_ascii(),
                message: e.to_string(),
            })?;
        let mut names: Vec<Name> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(ns) => Some(ns.0.clone()),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Err(ProbeError::NoNameservers(fqdn.to_ascii()));
        }
        // Every nameserver's addresses at once: one slow name must not delay the others.
        let mut set = tokio::task::JoinSet::new();
        for (i, name) in names.iter().enumerate() {
            let resolver = self.discovery.clone();
            let name = name.clone();
            set.spawn(async move {
                let mut ips: Vec<IpAddr> = Vec::new();
                for rtype in [RecordType::A, RecordType::AAAA] {
                    if let Ok(l) = resolver.lookup(name.clone(), rtype).await {
                        ips.extend(l.answers().iter().filter_map(|a| match &a.data {
                            RData::A(a) => Some(IpAddr::V4(a.0)),
                            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                            _ => None,
                        }));
                    }
                }
                (i, ips)
            });
        }
        let mut out: Vec<Nameserver> = names
            .into_iter()
            .map(|name| Nameserver {
                name,
                addresses: vec![],
            })
            .collect();
        while let Some(joined) = set.join_next().await {
            if let Ok((i, ips)) = joined
                && let Some(ns) = out.get_mut(i)
            {
                ns.addresses = ips
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, self.port))
                    .collect();
            }
        }
        Ok(out)
    }
}

/// Whether `m` is the response to our query `id` about `question`.
fn answers(m: &Message, id: u16, question: &Query) -> bool {
    m.metadata.id == id
        && m.metadata.message_type == MessageType::Response
        && m.queries.len() == 1
        && same_name(m.queries[0].name(), question.name())
        && m.queries[0].query_type() == question.query_type()
        && m.queries[0].query_class() == question.query_class()
}

/// Names compared without case and without regard to the final dot (a relative name is sent
/// as if absolute).
fn same_name(a: &Name, b: &Name) -> bool {
    let text = |n: &Name| {
        n.to_lowercase()
            .to_ascii()
            .trim_end_matches('.')
            .to_string()
    };
    text(a) == text(b)
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
