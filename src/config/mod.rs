//! The daemon's configuration: the YAML schema, its embedded defaults and its validation.
//!
//! This module owns turning a YAML file (or nothing) into a checked [`Config`]. It must not
//! open sockets or read zones: every error it reports names the key (`dns.listen[0]`) and,
//! when the YAML itself is broken, the line and column.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::provision::platform::Platform;
pub use crate::zone::journal::JournalLimits;
pub use crate::zone::serial::SerialScheme;

/// Everything the daemon needs to start. Every field has a default, so an empty file (or no
/// file at all) runs the example zone on loopback ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Folder holding `<zone>.zone` master files.
    pub zones_dir: PathBuf,
    /// Zone files larger than this many bytes are refused without being read.
    pub max_zone_file_bytes: u64,
    /// Folder holding private keys and the API token (mode 0700, never in git).
    pub keys_dir: PathBuf,
    pub dns: DnsConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    /// What a zone created through the API gets when the request does not say.
    pub zone_defaults: ZoneDefaults,
    /// E-mail platforms domains can be associated with.
    pub platforms: Vec<Platform>,
    /// How often an external domain waiting for its DKIM key records is diagnosed (ms);
    /// rotations and removals of retired keys run at their own deadlines.
    pub dkim_check_interval_ms: u64,
    pub diagnosis: DiagnosisConfig,
    /// Zone transfers to secondaries: TSIG keys and who may transfer what.
    pub transfer: TransferConfig,
    /// What `/metrics` exports.
    pub metrics: MetricsConfig,
    /// DNSSEC online signing (see the README, "DNSSEC").
    pub dnssec: crate::dnssec::Policy,
    /// The public web listener: autoconfig, autodiscover and MTA-STS policies for
    /// associated domains (off by default).
    pub web: WebConfig,
    /// Certificates for the web listener by ACME (RFC 8555) with DNS-01 challenges written
    /// into the hosted zones, or HTTP-01 for external domains with `acme.http01` (off by
    /// default; see the README, "Certificates by ACME").
    pub acme: AcmeConfig,
}

/// Certificates obtained by ACME for the web names of hosted associated domains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeConfig {
    pub enabled: bool,
    /// The ACME directory: production, staging, or a local test server (pebble).
    pub directory_url: String,
    /// E-mail address given to the CA when the account is made (`null`: none).
    pub contact: Option<String>,
    /// PEM bundle of the certificate authorities trusted for the directory's HTTPS.
    pub ca_file: PathBuf,
    /// One more PEM file of roots to trust for the directory (a test CA such as pebble's).
    pub extra_ca_file: Option<PathBuf>,
    /// A certificate is renewed this many days before it expires.
    pub renew_before_days: u64,
    /// The first retry after a failed order, in seconds; each further failure doubles it,
    /// up to a day.
    pub retry_secs: u64,
    /// Which web names of each hosted associated domain are certified, each only when the
    /// association's families publish it: `mta-sts` (family `mta-sts`), `autoconfig` and
    /// `autodiscover` (family `autoconfig`).
    pub names: Vec<String>,
    /// Orders under way at the same time.
    pub concurrency: usize,
    /// External (not hosted) associated domains get certificates too, by HTTP-01: the CA
    /// fetches `http://<name>/.well-known/acme-challenge/<token>` from the plain-HTTP web
    /// listener, so it needs `web.enabled` and `web.http_listen` (and the names pointing
    /// at it, port 80).
    pub http01: bool,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            directory_url: "https://acme-v02.api.letsencrypt.org/directory".into(),
            contact: None,
            ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            extra_ca_file: None,
            renew_before_days: 30,
            retry_secs: 300,
            names: vec!["mta-sts".into(), "autoconfig".into(), "autodiscover".into()],
            concurrency: 4,
            http01: false,
        }
    }
}

/// The public web listener (`crate::web`), separate from the loopback admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub enabled: bool,
    /// Plain HTTP (autoconfig, autodiscover; never MTA-STS, which RFC 8461 wants over
    /// HTTPS). `null`: no plain listener.
    pub http_listen: Option<SocketAddr>,
    /// HTTPS, with the certificates of `<keys_dir>/certs/` (`<host>.crt` and `<host>.key`,
    /// `_.<domain>` for a wildcard, `default` for any other name). `null`: no HTTPS.
    pub https_listen: Option<SocketAddr>,
    /// Largest request body (autodiscover XML); larger ones get 413.
    pub max_body_bytes: usize,
    /// Headers (and the TLS handshake) must arrive within this time.
    pub header_read_timeout_secs: u64,
    /// Simultaneous connections per listener; more are closed at once.
    pub max_connections: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            https_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8443))),
            max_body_bytes: 16 * 1024,
            header_read_timeout_secs: 10,
            max_connections: 1024,
        }
    }
}

/// What `/metrics` exports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Which domains get per-domain series (`mailzone_diagnosis_check_status`,
    /// `mailzone_dkim_key_age_seconds`): 100,000 domains must not mean a million series.
    pub per_domain: PerDomain,
}

/// Which domains get per-domain metric series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PerDomain {
    #[default]
    All,
    /// Only domains whose last diagnosis has a red check.
    Failing,
    None,
}

/// Zone transfers out (AXFR to secondaries). With no `secondaries`, every transfer is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    /// TSIG keys by name; each secret lives in `<keys_dir>/tsig/<name>.key` (0600), generated
    /// when absent. The secret is never in the config, the API or the log.
    pub keys: Vec<TsigKeyConfig>,
    /// Who may transfer which zones; the transfer ACL is made of these entries only.
    pub secondaries: Vec<SecondaryConfig>,
    /// How much history each zone keeps for IXFR (`zones/<zone>.journal`).
    pub journal: JournalLimits,
    /// The catalog zone (RFC 9432, version 2) listing every hosted zone, e.g.
    /// `catalog.invalid.`; kept by mailzone. Absent: no catalog.
    pub catalog: Option<String>,
    /// How long the first NOTIFY of a change waits for its acknowledgement; each retry
    /// waits twice as long as the one before (RFC 1996 §3.6).
    pub notify_timeout_ms: u64,
    /// NOTIFYs sent per change before giving up on an unacknowledging secondary.
    pub notify_tries: u32,
    /// Least time between the starts of two NOTIFYs of one zone to one secondary: a burst
    /// of changes becomes a few NOTIFYs (the first change of a quiet zone goes at once).
    pub notify_interval_ms: u64,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            secondaries: Vec::new(),
            journal: JournalLimits::default(),
            catalog: None,
            notify_timeout_ms: 1000,
            notify_tries: 5,
            notify_interval_ms: 250,
        }
    }
}

impl TransferConfig {
    /// The catalog zone's name, when one is configured (checked at load).
    pub fn catalog_name(&self) -> Option<hickory_proto::rr::Name> {
        let text = self.catalog.as_deref()?;
        hickory_proto::rr::Name::from_ascii(text)
            .ok()
            .map(|n| n.to_lowercase())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsigKeyConfig {
    /// The key's name as both ends write it (a domain name, e.g. `xfr-ns2`).
    pub name: String,
    #[serde(default)]
    pub algorithm: TsigAlgorithm,
    /// What RFC 2136 UPDATEs signed with this key may change; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdatePolicy>,
}

/// What a TSIG key may change through RFC 2136 UPDATE: zones, and optionally only some
/// names and record types in them (e.g. `_acme-challenge` TXT for an ACME client).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    /// `all` or a list of absolute zone names.
    pub zones: ZoneSelection,
    /// Names it may touch, relative to the zone (`_acme-challenge`, `@`) or absolute
    /// (ending with a dot); `*.x` covers every name below `x`. Empty: every name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Record types it may touch (`TXT`, `A`, …). Empty: every type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
}

/// TSIG MAC algorithms (RFC 8945 §6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TsigAlgorithm {
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

impl TsigAlgorithm {
    /// The name used on the wire and in NSD, Knot and BIND configs.
    pub fn name(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha512 => "hmac-sha512",
        }
    }

    /// Length of a generated secret: the hash's output size (RFC 8945 §6: at least that).
    pub fn secret_len(self) -> usize {
        match self {
            Self::HmacSha256 => 32,
            Self::HmacSha512 => 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondaryConfig {
    /// The secondary's address, `IP` or `IP:PORT` (the port is where NOTIFY would go; the
    /// transfer ACL matches the IP).
    pub address: String,
    /// Name of the TSIG key its requests must be signed with; absent: unsigned from this IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Zones it may transfer: `all` or a list of zone names.
    #[serde(default)]
    pub zones: ZoneSelection,
}

/// `zones: all` or `zones: [a.example., b.example.]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ZoneSelection {
    #[default]
    All,
    List(Vec<String>),
}

impl Serialize for ZoneSelection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::All => s.serialize_str("all"),
            Self::List(zones) => zones.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ZoneSelection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<String>),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "all" => Ok(Self::All),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "{w:?}: expected \"all\" or a list of zones"
            ))),
            Raw::List(zones) => Ok(Self::List(zones)),
        }
    }
}

impl SecondaryConfig {
    /// The address as IP and port (53 when none is given).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        if let Ok(a) = self.address.parse::<SocketAddr>() {
            return Some(a);
        }
        self.address
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    }
}

/// How domains hosted elsewhere are looked at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiagnosisConfig {
    /// Resolver used to find a domain's nameservers (`IP:PORT`); default: the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolver: Option<SocketAddr>,
    /// Port the nameservers themselves are asked on (53; tests use loopback ports).
    pub port: u16,
    /// Time allowed for one query, in milliseconds.
    pub timeout_ms: u64,
    /// Time allowed for a whole domain's diagnosis, in milliseconds, however many of its
    /// nameservers do not answer (what is unanswered by then is reported as such).
    pub budget_ms: u64,
    /// How often each association is diagnosed (with ±10% jitter), in seconds.
    pub interval_secs: u64,
    /// Domains diagnosed at the same time.
    pub concurrency: usize,
    /// Queries in flight to one nameserver address at the same time.
    pub per_nameserver: usize,
    /// Port the HTTPS checks connect to (MTA-STS policy, autoconfig): 443, or a loopback
    /// port in tests.
    pub web_port: u16,
    /// PEM file of the certificate authorities HTTPS checks trust.
    pub web_ca_file: PathBuf,
    /// Whether autoconfig and autodiscover are fetched over HTTPS and compared with the
    /// platform's settings (off: only their DNS names are checked).
    pub check_autoconfig_http: bool,
}

impl Default for DiagnosisConfig {
    fn default() -> Self {
        Self {
            resolver: None,
            port: 53,
            timeout_ms: 2000,
            budget_ms: 4000,
            interval_secs: 300,
            concurrency: 32,
            per_nameserver: 4,
            web_port: 443,
            web_ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            check_autoconfig_http: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZoneDefaults {
    /// How SOA serials are bumped on every change: `date` (YYYYMMDDnn), `unixtime`, `increment`.
    pub serial: SerialScheme,
    /// Name servers of a new zone when the request lists none (absolute names).
    pub nameservers: Vec<String>,
    /// SOA RNAME (the responsible mailbox, `hostmaster.example.net.`); default
    /// `hostmaster.<zone>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostmaster: Option<String>,
    /// TTL of new records when none is given.
    pub ttl: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    /// SOA MINIMUM: the TTL of negative answers (RFC 2308).
    pub minimum: u32,
}

impl Default for ZoneDefaults {
    fn default() -> Self {
        Self {
            serial: SerialScheme::Date,
            nameservers: Vec::new(),
            hostmaster: None,
            ttl: 3600,
            refresh: 3600,
            retry: 900,
            expire: 1_209_600,
            minimum: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Addresses to serve DNS on; each is bound for both UDP and TCP. Port 0 picks a free
    /// port (the same one for UDP and TCP), which is what the tests use.
    pub listen: Vec<SocketAddr>,
    /// Largest UDP response we send, whatever the client advertises (RFC 9715 / DNS flag day
    /// 2020 recommend 1232 to avoid IP fragmentation).
    pub max_udp_payload: u16,
    /// Number of UDP sockets per address (SO_REUSEPORT) so that several cores can answer.
    pub udp_sockets: usize,
    /// Idle time after which a TCP connection is closed, in seconds.
    pub tcp_idle_timeout_secs: u64,
    /// Maximum simultaneous TCP connections per listen address. Above 90 % of it the idle
    /// timeout is shortened, and when it is reached the connection idle longest is closed
    /// to make room (as NSD and Knot do).
    pub tcp_max_connections: usize,
    /// Maximum simultaneous TCP connections from one client address; more are closed at once.
    /// Loose, as RFC 7766 §6.2.2 asks: one address may be many resolvers, or a NAT (a
    /// benchmark client opens 20); the table's eviction protects the others beyond it.
    pub tcp_max_per_address: usize,
    /// Response rate limiting over UDP.
    pub rrl: RrlConfig,
}

/// Response rate limiting (RRL) in the manner of NSD, Knot and BIND: per client prefix,
/// each kind of response has a budget per second; responses over it are dropped, except
/// every `slip`-th, which is sent truncated (TC=1, no records) so that a real client
/// retries over TCP. TCP is never limited. Off by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RrlConfig {
    pub enabled: bool,
    /// Positive answers (NOERROR, referrals, NODATA) per second per client prefix.
    pub responses_per_second: u32,
    /// NXDOMAIN answers per second per client prefix.
    pub nxdomains_per_second: u32,
    /// Error answers (REFUSED, FORMERR, NOTIMP, SERVFAIL, BADVERS) per second per prefix.
    pub errors_per_second: u32,
    /// Every `slip`-th limited response is sent truncated instead of dropped; 0 drops all.
    pub slip: u32,
    /// Client prefix length for IPv4 addresses.
    pub ipv4_prefix_length: u8,
    /// Client prefix length for IPv6 addresses.
    pub ipv6_prefix_length: u8,
    /// Number of buckets (a power of two); each prefix and kind hashes to one.
    pub table_size: usize,
}

impl Default for RrlConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            responses_per_second: 20,
            nxdomains_per_second: 10,
            errors_per_second: 10,
            slip: 2,
            ipv4_prefix_length: 24,
            ipv6_prefix_length: 56,
            table_size: 65536,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the HTTP API, status page and metrics.
    pub listen: SocketAddr,
    /// Bearer token for mutating API calls. When absent, one is generated at first start into
    /// `<keys_dir>/api-token` (mode 0600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// A connection must send a request's headers within this time, whether it is new or
    /// waiting between keep-alive requests; otherwise it is closed.
    pub header_read_timeout_secs: u64,
    /// A request's body must arrive within this time after its headers.
    pub body_read_timeout_secs: u64,
    /// Simultaneous HTTP connections; more are closed at once.
    pub max_connections: usize,
    /// Requests served on one keep-alive connection before it is closed.
    pub max_requests_per_connection: u64,
    /// Whether `/`, `/v1/status` and `/metrics` answer without a token.
    pub open_reads: OpenReads,
}

/// When the read-only pages answer without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OpenReads {
    /// Only while `http.listen` is a loopback address.
    #[default]
    Loopback,
    Always,
    /// A token is always needed (any valid token).
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `mailzone=debug,info`.
    pub level: String,
    /// Problems caused by what clients send (malformed queries, refused connections, accept
    /// errors) are counted in metrics and summarised in the log at most once per interval
    /// and kind, never once per packet.
    pub summary_interval_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            zones_dir: PathBuf::from("zones"),
            max_zone_file_bytes: 64 << 20,
            keys_dir: PathBuf::from("keys"),
            dns: DnsConfig::default(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
            zone_defaults: ZoneDefaults::default(),
            platforms: vec![Platform::example()],
            dkim_check_interval_ms: 60_000,
            diagnosis: DiagnosisConfig::default(),
            transfer: TransferConfig::default(),
            metrics: MetricsConfig::default(),
            dnssec: crate::dnssec::Policy::default(),
            web: WebConfig::default(),
            acme: AcmeConfig::default(),
        }
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5300))],
            max_udp_payload: 1232,
            udp_sockets: 2,
            tcp_idle_timeout_secs: 10,
            tcp_max_connections: 1024,
            tcp_max_per_address: 64,
            rrl: RrlConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8053)),
            token: None,
            max_body_bytes: 1 << 20,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            max_connections: 512,
            max_requests_per_connection: 1000,
            open_reads: OpenReads::Loopback,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_string(),
            summary_interval_secs: 60,
        }
    }
}

/// Why a configuration was rejected. The message always says where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {path}: {message}")]
    Invalid {
        file: String,
        path: String,
        message: String,
    },
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &file.display().to_string())
    }

    /// Parses and validates YAML text; `origin` names the text in error messages.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |path: String, message: String| ConfigError::Invalid {
            file: origin.to_string(),
            path,
            message,
        };
        // An empty file is a valid "all defaults" configuration.
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let deserializer = serde_yaml::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let mut message = e.into_inner().to_string();
            // serde_yaml repeats the path in front of its message; we already give it.
            if let Some((head, rest)) = message.split_once(": ")
                && !head.contains(' ')
                && path.contains(head)
            {
                message = rest.to_string();
            }
            let path = if path == "." {
                "(top level)".to_string()
            } else {
                path
            };
            invalid(path, message)
        })?;
        config
            .validate()
            .map_err(|(path, message)| invalid(path, message))?;
        Ok(config)
    }

    /// Checks the values serde cannot: returns the key path and the reason.
    fn validate(&self) -> Result<(), (String, String)> {
        self.validate_acme()?;
        if self.web.enabled {
            if self.web.http_listen.is_none() && self.web.https_listen.is_none() {
                return Err((
                    "web.https_listen".into(),
                    "the web listener is enabled but has no address".into(),
                ));
            }
            if self.web.max_connections == 0 {
                return Err(("web.max_connections".into(), "must be at least 1".into()));
            }
            if !(256..=1 << 20).contains(&self.web.max_body_bytes) {
                return Err((
                    "web.max_body_bytes".into(),
                    format!("{} is outside 256..=1048576", self.web.max_body_bytes),
                ));
            }
        }
        if self.dns.listen.is_empty() {
            return Err((
                "dns.listen".into(),
                "at least one address is required".into(),
            ));
        }
        for (i, a) in self.dns.listen.iter().enumerate() {
            if self.dns.listen[..i].contains(a) {
                return Err((format!("dns.listen[{i}]"), format!("{a} is listed twice")));
            }
        }
        if !(512..=65535).contains(&self.dns.max_udp_payload) {
            return Err((
                "dns.max_udp_payload".into(),
                format!("{} is outside 512..=65535", self.dns.max_udp_payload),
            ));
        }
        if !(1..=64).contains(&self.dns.udp_sockets) {
            return Err((
                "dns.udp_sockets".into(),
                format!("{} is outside 1..=64", self.dns.udp_sockets),
            ));
        }
        if self.dns.tcp_max_connections == 0 {
            return Err((
                "dns.tcp_max_connections".into(),
                "must be at least 1".into(),
            ));
        }
        if self.dns.tcp_max_per_address == 0 {
            return Err((
                "dns.tcp_max_per_address".into(),
                "must be at least 1".into(),
            ));
        }
        let rrl = &self.dns.rrl;
        if !rrl.table_size.is_power_of_two() || !(64..=1 << 24).contains(&rrl.table_size) {
            return Err((
                "dns.rrl.table_size".into(),
                format!("{} is not a power of two in 64..=16777216", rrl.table_size),
            ));
        }
        if rrl.ipv4_prefix_length > 32 {
            return Err((
                "dns.rrl.ipv4_prefix_length".into(),
                format!("{} is outside 0..=32", rrl.ipv4_prefix_length),
            ));
        }
        if rrl.ipv6_prefix_length > 128 {
            return Err((
                "dns.rrl.ipv6_prefix_length".into(),
                format!("{} is outside 0..=128", rrl.ipv6_prefix_length),
            ));
        }
        for (key, v) in [
            ("responses_per_second", rrl.responses_per_second),
            ("nxdomains_per_second", rrl.nxdomains_per_second),
            ("errors_per_second", rrl.errors_per_second),
        ] {
            if v == 0 || v > 60_000 {
                return Err((
                    format!("dns.rrl.{key}"),
                    format!("{v} is outside 1..=60000"),
                ));
            }
        }
        for (key, v) in [
            (
                "header_read_timeout_secs",
                self.http.header_read_timeout_secs,
            ),
            ("body_read_timeout_secs", self.http.body_read_timeout_secs),
            (
                "max_requests_per_connection",
                self.http.max_requests_per_connection,
            ),
            ("max_connections", self.http.max_connections as u64),
        ] {
            if v == 0 {
                return Err((format!("http.{key}"), "must be at least 1".into()));
            }
        }
        if self.log.summary_interval_secs == 0 {
            return Err((
                "log.summary_interval_secs".into(),
                "must be at least 1".into(),
            ));
        }
        if let Some(token) = &self.http.token
            && (token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err((
                "http.token".into(),
                "must be at least 16 characters without spaces".into(),
            ));
        }
        let zd = &self.zone_defaults;
        for (i, ns) in zd.nameservers.iter().enumerate() {
            if !ns.ends_with('.') || hickory_proto::rr::Name::from_ascii(ns).is_err() {
                return Err((
                    format!("zone_defaults.nameservers[{i}]"),
                    format!("{ns:?} is not an absolute domain name (it must end with a dot)"),
                ));
            }
        }
        if let Some(h) = &zd.hostmaster
            && (!h.ends_with('.') || hickory_proto::rr::Name::from_ascii(h).is_err())
        {
            return Err((
                "zone_defaults.hostmaster".into(),
                format!("{h:?} is not an absolute domain name (it must end with a dot)"),
            ));
        }
        for (key, v) in [
            ("ttl", zd.ttl),
            ("refresh", zd.refresh),
            ("retry", zd.retry),
            ("expire", zd.expire),
            ("minimum", zd.minimum),
        ] {
            if v > crate::zone::master::MAX_TTL {
                return Err((
                    format!("zone_defaults.{key}"),
                    format!("{v} is larger than {}", crate::zone::master::MAX_TTL),
                ));
            }
        }
        for (i, p) in self.platforms.iter().enumerate() {
            p.validate()
                .map_err(|(key, message)| (format!("platforms[{i}].{key}"), message))?;
            if self.platforms[..i].iter().any(|q| q.id == p.id) {
                return Err((
                    format!("platforms[{i}].id"),
                    format!("{:?} is used twice", p.id),
                ));
            }
        }
        if self.http.max_body_bytes < 1024 {
            return Err(("http.max_body_bytes".into(), "must be at least 1024".into()));
        }
        if self.max_zone_file_bytes < 1024 {
            return Err(("max_zone_file_bytes".into(), "must be at least 1024".into()));
        }
        if self.zones_dir.as_os_str().is_empty() {
            return Err(("zones_dir".into(), "must not be empty".into()));
        }
        if self.keys_dir.as_os_str().is_empty() {
            return Err(("keys_dir".into(), "must not be empty".into()));
        }
        self.validate_transfer()?;
        self.dnssec.validate()?;
        if let Err(e) = self
            .log
            .level
            .parse::<tracing_subscriber::filter::Targets>()
        {
            return Err(("log.level".into(), e.to_string()));
        }
        Ok(())
    }

    /// Key names are domain names used once (they also name files); secondaries parse and
    /// name keys that exist; listed zones are absolute names.
    fn validate_acme(&self) -> Result<(), (String, String)> {
        let a = &self.acme;
        let err = |path: &str, m: String| Err((format!("acme.{path}"), m));
        if !a.directory_url.starts_with("https://") {
            return err(
                "directory_url",
                format!("{:?} is not an https:// URL", a.directory_url),
            );
        }
        if let Some(c) = &a.contact
            && (!c.contains('@') || c.contains(char::is_whitespace) || c.starts_with("mailto:"))
        {
            return err("contact", format!("{c:?} is not an e-mail address"));
        }
        if !(1..=365).contains(&a.renew_before_days) {
            return err(
                "renew_before_days",
                format!("{} is outside 1..=365", a.renew_before_days),
            );
        }
        if !(1..=86_400).contains(&a.retry_secs) {
            return err(
                "retry_secs",
                format!("{} is outside 1..=86400", a.retry_secs),
            );
        }
        if !(1..=64).contains(&a.concurrency) {
            return err(
                "concurrency",
                format!("{} is outside 1..=64", a.concurrency),
            );
        }
        for (i, n) in a.names.iter().enumerate() {
            if !["mta-sts", "autoconfig", "autodiscover"].contains(&n.as_str()) {
                return err(
                    &format!("names[{i}]"),
                    format!("{n:?} is not one of mta-sts, autoconfig, autodiscover"),
                );
            }
        }
        if a.http01 && !(self.web.enabled && self.web.http_listen.is_some()) {
            return err(
                "http01",
                "HTTP-01 challenges are answered by the plain-HTTP web listener: it needs \
                 web.enabled: true and a web.http_listen address"
                    .into(),
            );
        }
        Ok(())
    }

    fn validate_transfer(&self) -> Result<(), (String, String)> {
        let t = &self.transfer;
        for (i, k) in t.keys.iter().enumerate() {
            let simple = !k.name.is_empty()
                && k.name.len() <= 200
                && k.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                && !k.name.starts_with('.')
                && !k.name.contains("..");
            if !simple || hickory_proto::rr::Name::from_ascii(&k.name).is_err() {
                return Err((
                    format!("transfer.keys[{i}].name"),
                    format!(
                        "{:?} is not a key name (letters, digits, '-', '_', '.')",
                        k.name
                    ),
                ));
            }
            if t.keys[..i].iter().any(|o| o.name == k.name) {
                return Err((
                    format!("transfer.keys[{i}].name"),
                    format!("{:?} is used twice", k.name),
                ));
            }
            if let Some(policy) = &k.update {
                validate_update_policy(policy, &format!("transfer.keys[{i}].update"))?;
            }
        }
        if let Some(catalog) = &t.catalog {
            // The name also names its file: plain labels only, absolute, not the root.
            let plain = catalog.split('.').all(|l| {
                l.len() <= 63
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
            if !plain
                || !catalog.ends_with('.')
                || catalog.starts_with('.')
                || catalog.contains("..")
                || hickory_proto::rr::Name::from_ascii(catalog).is_err()
            {
                return Err((
                    "transfer.catalog".into(),
                    format!(
                        "{catalog:?} is not an absolute zone name (letters, digits, '-', '_' in labels, ending with a dot), e.g. \"catalog.invalid.\""
                    ),
                ));
            }
        }
        if !(10..=60_000).contains(&t.notify_timeout_ms) {
            return Err((
                "transfer.notify_timeout_ms".into(),
                "must be between 10 and 60000".into(),
            ));
        }
        if t.notify_interval_ms > 60_000 {
            return Err((
                "transfer.notify_interval_ms".into(),
                "must be at most 60000".into(),
            ));
        }
        if !(1..=20).contains(&t.notify_tries) {
            return Err((
                "transfer.notify_tries".into(),
                "must be between 1 and 20".into(),
            ));
        }
        for (i, s) in t.secondaries.iter().enumerate() {
            if s.socket_addr().is_none() {
                return Err((
                    format!("transfer.secondaries[{i}].address"),
                    format!("{:?} is not IP or IP:PORT", s.address),
                ));
            }
            if let Some(key) = &s.key
                && !t.keys.iter().any(|k| &k.name == key)
            {
                return Err((
                    format!("transfer.secondaries[{i}].key"),
                    format!("{key:?} is not among transfer.keys"),
                ));
            }
            if let ZoneSelection::List(zones) = &s.zones {
                for (j, z) in zones.iter().enumerate() {
                    if !z.ends_with('.') || hickory_proto::rr::Name::from_ascii(z).is_err() {
                        return Err((
                            format!("transfer.secondaries[{i}].zones[{j}]"),
                            format!("{z:?} is not an absolute zone name (it must end with a dot)"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The effective configuration as YAML, the token masked.
    pub fn to_yaml_redacted(&self) -> String {
        let mut shown = self.clone();
        if shown.http.token.is_some() {
            shown.http.token = Some("<redacted>".into());
        }
        serde_yaml::to_string(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Zones are absolute names, names parse (relative or absolute, `*.` only in front), types
/// are known record types that can be stored.
fn validate_update_policy(policy: &UpdatePolicy, at: &str) -> Result<(), (String, String)> {
    if let ZoneSelection::List(zones) = &policy.zones {
        for (j, z) in zones.iter().enumerate() {
            if !z.ends_with('.') || hickory_proto::rr::Name::from_ascii(z).is_err() {
                return Err((
                    format!("{at}.zones[{j}]"),
                    format!("{z:?} is not an absolute zone name (it must end with a dot)"),
                ));
            }
        }
    }
    for (j, n) in policy.names.iter().enumerate() {
        let body = n.strip_prefix("*.").unwrap_or(n);
        let ok = !body.is_empty()
            && !body.contains('*')
            && (body == "@" || hickory_proto::rr::Name::from_ascii(body).is_ok());
        if !ok {
            return Err((
                format!("{at}.names[{j}]"),
                format!(
                    "{n:?} is not a name (relative like \"_acme-challenge\", absolute ending with a dot, or \"*.\" in front for the names below)"
                ),
            ));
        }
    }
    for (j, t) in policy.types.iter().enumerate() {
        if let Err(e) = crate::zone::master::parse_record_type(t) {
            return Err((format!("{at}.types[{j}]"), e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_gives_the_embedded_defaults() {
        assert_eq!(Config::from_yaml("", "t").unwrap(), Config::default());
    }

    #[test]
    fn bad_acme_settings_are_refused_with_their_path() {
        for (yaml, path) in [
            (
                "acme: {directory_url: \"http://x/dir\"}\n",
                "acme.directory_url",
            ),
            ("acme: {contact: \"nobody\"}\n", "acme.contact"),
            ("acme: {renew_before_days: 0}\n", "acme.renew_before_days"),
            ("acme: {retry_secs: 0}\n", "acme.retry_secs"),
            ("acme: {names: [www]}\n", "acme.names[0]"),
            ("acme: {concurrency: 0}\n", "acme.concurrency"),
            ("acme: {http01: true}\n", "acme.http01"),
            (
                "acme: {http01: true}\nweb: {enabled: true, http_listen: null}\n",
                "acme.http01",
            ),
        ] {
            let err = Config::from_yaml(yaml, "c.yaml").unwrap_err().to_string();
            assert!(err.contains(path), "{yaml}: {err}");
        }
    }

    #[test]
    fn unknown_key_is_rejected_with_its_path() {
        let err = Config::from_yaml("dns:\n  lisen: []\n", "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("c.yaml: dns.lisen: unknown field `lisen`"),
            "{err}"
        );
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn bad_value_is_rejected_with_its_path() {
        let err = Config::from_yaml("dns:\n  listen: [\"nope\"]\n", "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("dns.listen[0]"), "{err}");
    }

    #[test]
    fn transfer_catalog_must_be_an_absolute_plain_zone_name() {
        for bad in [
            "catalog.invalid",
            ".",
            "a..b.",
            "cat/alog.invalid.",
            "a b.invalid.",
        ] {
            let yaml = format!("transfer:\n  catalog: \"{bad}\"\n");
            let err = Config::from_yaml(&yaml, "c.yaml").unwrap_err().to_string();
            assert!(err.contains("transfer.catalog"), "{bad}: {err}");
        }
        let ok = Config::from_yaml("transfer:\n  catalog: Catalog.Invalid.\n", "c.yaml").unwrap();
        assert_eq!(
            ok.transfer.catalog_name().map(|n| n.to_ascii()).as_deref(),
            Some("catalog.invalid.")
        );
    }

    #[test]
    fn a_bad_platform_setting_is_rejected_with_its_path() {
        let yaml = "platforms:\n  - id: p\n    mx: [{host: mx.example.net, priority: 10}]\n";
        let err = Config::from_yaml(yaml, "c.yaml").unwrap_err().to_string();
        assert!(err.contains("platforms[0].mx[0].host"), "{err}");
    }

    #[test]
    fn rsa_keys_below_2048_bits_and_ed25519_alone_are_refused() {
        let yaml = "platforms:\n  - id: p\n    dkim: {rsa_bits: 1024}\n";
        let err = Config::from_yaml(yaml, "c.yaml").unwrap_err().to_string();
        assert!(err.contains("platforms[0].dkim.rsa_bits"), "{err}");
        let yaml = "platforms:\n  - id: p\n    dkim: {algorithms: [ed25519]}\n";
        let err = Config::from_yaml(yaml, "c.yaml").unwrap_err().to_string();
        assert!(err.contains("platforms[0].dkim.algorithms"), "{err}");
        assert!(crate::dkim::key::generate(crate::dkim::DkimAlgorithm::Rsa, 1024).is_err());
    }

    #[test]
    fn the_embedded_defaults_ship_the_example_platform() {
        let c = Config::default();
        assert_eq!(c.platforms.len(), 1);
        assert_eq!(c.platforms[0].mx.len(), 5);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn rate_limiting_and_connection_limits_are_checked_with_their_path() {
        for (yaml, path) in [
            ("dns:\n  rrl: {table_size: 1000}\n", "dns.rrl.table_size"),
            (
                "dns:\n  rrl: {ipv4_prefix_length: 33}\n",
                "dns.rrl.ipv4_prefix_length",
            ),
            (
                "dns:\n  rrl: {errors_per_second: 0}\n",
                "dns.rrl.errors_per_second",
            ),
            (
                "dns:\n  tcp_max_per_address: 0\n",
                "dns.tcp_max_per_address",
            ),
            (
                "http:\n  header_read_timeout_secs: 0\n",
                "http.header_read_timeout_secs",
            ),
            ("http:\n  max_connections: 0\n", "http.max_connections"),
            (
                "log:\n  summary_interval_secs: 0\n",
                "log.summary_interval_secs",
            ),
            ("log:\n  level: \"mailzone=loud\"\n", "log.level"),
        ] {
            let err = Config::from_yaml(yaml, "c.yaml").unwrap_err().to_string();
            assert!(err.contains(path), "{yaml}: {err}");
        }
    }

    #[test]
    fn out_of_range_payload_is_rejected() {
        let err = Config::from_yaml("dns:\n  max_udp_payload: 100\n", "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("dns.max_udp_payload"), "{err}");
    }
}
