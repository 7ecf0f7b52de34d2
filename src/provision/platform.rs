//! E-mail platforms as declared in the configuration.
//!
//! This module owns what a platform offers (MX hosts, client endpoints, autodiscover and
//! autoconfig hosts, SPF mechanisms, DMARC default, ownership target, TTL), its validation
//! with key paths, and the example platform of the embedded defaults. It must not compute
//! records: [`super::records`] does.

use serde::{Deserialize, Serialize};

pub use crate::dkim::DkimAlgorithm;

/// One e-mail platform domains can be associated with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// Stable identifier used by the API (`"pro1"`).
    pub id: String,
    /// Inbound mail hosts, each with its MX preference.
    #[serde(default)]
    pub mx: Vec<MxHost>,
    /// Client endpoints (IMAP, POP3, SMTP submission); any may be absent.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Target of the `_autodiscover._tcp` SRV record (Outlook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autodiscover_host: Option<String>,
    /// Target of the `autoconfig` and `autodiscover` CNAMEs (Thunderbird, Outlook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoconfig_host: Option<String>,
    /// SPF mechanisms authorising the platform's senders (`include:...`, `ip4:...`).
    #[serde(default)]
    pub spf: Vec<String>,
    /// DMARC record published when a domain has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc: Option<DmarcDefault>,
    /// CNAME target of the ownership token of external domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership_target: Option<String>,
    /// TTL of the records generated for this platform.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// How DKIM keys are made, published and rotated for domains on this platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim: Option<DkimPolicy>,
    /// MTA-STS (family `mta-sts`): the policy the web listener serves and where
    /// `mta-sts.<domain>` points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mta_sts: Option<super::mta_sts::MtaSts>,
    /// TLS reporting (family `tls-rpt`): where senders report TLS failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_rpt: Option<super::mta_sts::TlsRpt>,
}

/// A platform's DKIM policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimPolicy {
    /// Key algorithms; RSA is always needed (major receivers do not verify Ed25519 alone).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<DkimAlgorithm>,
    /// 2048, 3072 or 4096.
    #[serde(default = "default_rsa_bits")]
    pub rsa_bits: usize,
    /// Selector name pattern: `{platform}`, `{yyyymm}`, `{n}` (generation number) and, with
    /// several algorithms, the algorithm is appended (`-rsa`, `-ed25519`).
    #[serde(default = "default_selector")]
    pub selector: String,
    /// External domains: `txt` (the user pastes the key record) or `cname` (the user points
    /// the selector at `delegation_zone`, a zone served here, once for all rotations).
    #[serde(default)]
    pub publication: DkimPublication,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_zone: Option<String>,
    /// Age of the signing key after which the successor takes over.
    #[serde(default = "default_rotate_after")]
    pub rotate_after_secs: u64,
    /// How long a retired key stays published after it stopped signing.
    #[serde(default = "default_keep_retired")]
    pub keep_retired_secs: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimPublication {
    #[default]
    Txt,
    Cname,
}

fn default_algorithms() -> Vec<DkimAlgorithm> {
    vec![DkimAlgorithm::Rsa]
}
fn default_rsa_bits() -> usize {
    2048
}
fn default_selector() -> String {
    "{platform}-{yyyymm}-{n}".into()
}
fn default_rotate_after() -> u64 {
    180 * 86_400
}
fn default_keep_retired() -> u64 {
    7 * 86_400
}

impl Default for DkimPolicy {
    fn default() -> Self {
        Self {
            algorithms: default_algorithms(),
            rsa_bits: default_rsa_bits(),
            selector: default_selector(),
            publication: DkimPublication::Txt,
            delegation_zone: None,
            rotate_after_secs: default_rotate_after(),
            keep_retired_secs: default_keep_retired(),
        }
    }
}

fn default_ttl() -> u32 {
    3600
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MxHost {
    pub host: String,
    pub priority: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Imap,
    Pop3,
    Submission,
}

/// How a client secures an endpoint (RFC 8314).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Security {
    ImplicitTls,
    Starttls,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub service: Service,
    pub host: String,
    pub port: u16,
    pub security: Security,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmarcDefault {
    /// `none`, `quarantine` or `reject`.
    pub policy: String,
    /// Aggregate report address, `mailto:...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rua: Option<String>,
}

impl Platform {
    /// The example platform of the embedded defaults, shaped like a real hosted-mail offer.
    pub fn example() -> Self {
        let mx = |n: u8, priority: u16| MxHost {
            host: format!("mx{n}.mail.example.net."),
            priority,
        };
        let host = "pro1.mail.example.net.".to_string();
        let endpoint = |service, port, security| Endpoint {
            service,
            host: host.clone(),
            port,
            security,
        };
        Platform {
            id: "pro1".into(),
            mx: vec![mx(0, 1), mx(1, 5), mx(2, 50), mx(3, 100), mx(4, 200)],
            endpoints: vec![
                endpoint(Service::Imap, 993, Security::ImplicitTls),
                endpoint(Service::Pop3, 995, Security::ImplicitTls),
                endpoint(Service::Submission, 465, Security::ImplicitTls),
                endpoint(Service::Submission, 587, Security::Starttls),
            ],
            autodiscover_host: Some(host.clone()),
            autoconfig_host: Some(host.clone()),
            spf: vec!["include:mx.mail.example.net".into()],
            dmarc: Some(DmarcDefault {
                policy: "none".into(),
                rua: Some("mailto:dmarc-reports@mail.example.net".into()),
            }),
            ownership_target: Some("check.mail.example.net.".into()),
            ttl: 3600,
            dkim: Some(DkimPolicy::default()),
            mta_sts: Some(super::mta_sts::MtaSts {
                mode: super::mta_sts::StsMode::Testing,
                max_age_secs: 604_800,
                mx: vec![],
                web_host: Some(host.clone()),
                web_addresses: vec![],
            }),
            tls_rpt: Some(super::mta_sts::TlsRpt {
                rua: vec!["mailto:tls-reports@mail.example.net".into()],
            }),
        }
    }

    /// The MTA-STS policy text of this platform, when it offers MTA-STS.
    pub fn mta_sts_policy(&self) -> Option<String> {
        let sts = self.mta_sts.as_ref()?;
        let hosts: Vec<&str> = self.mx.iter().map(|m| m.host.as_str()).collect();
        Some(sts.policy(&hosts))
    }

    /// Checks the values serde cannot; returns the key path below `platforms[i]` and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let absolute = |key: String, v: &str| -> Result<(), (String, String)> {
            if v.ends_with('.') && hickory_proto::rr::Name::from_ascii(v).is_ok() {
                Ok(())
            } else {
                Err((
                    key,
                    format!("{v:?} is not an absolute host name (it must end with a dot)"),
                ))
            }
        };
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err((
                "id".into(),
                format!("{:?}: letters, digits, '-' and '_' only", self.id),
            ));
        }
        for (i, m) in self.mx.iter().enumerate() {
            absolute(format!("mx[{i}].host"), &m.host)?;
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            absolute(format!("endpoints[{i}].host"), &e.host)?;
            if e.port == 0 {
                return Err((format!("endpoints[{i}].port"), "must not be 0".into()));
            }
        }
        for (key, v) in [
            ("autodiscover_host", &self.autodiscover_host),
            ("autoconfig_host", &self.autoconfig_host),
            ("ownership_target", &self.ownership_target),
        ] {
            if let Some(v) = v {
                absolute(key.into(), v)?;
            }
        }
        for (i, m) in self.spf.iter().enumerate() {
            let known = ["include:", "ip4:", "ip6:", "a", "mx", "exists:"];
            if m.contains(char::is_whitespace)
                || !known.iter().any(|k| m.starts_with(k))
                || m.ends_with("all")
            {
                return Err((
                    format!("spf[{i}]"),
                    format!("{m:?} is not an SPF mechanism (include:, ip4:, ip6:, a, mx, exists:)"),
                ));
            }
        }
        if let Some(d) = &self.dmarc {
            if !["none", "quarantine", "reject"].contains(&d.policy.as_str()) {
                return Err((
                    "dmarc.policy".into(),
                    format!("{:?}: none, quarantine or reject", d.policy),
                ));
            }
            if let Some(rua) = &d.rua
                && !rua.starts_with("mailto:")
            {
                return Err((
                    "dmarc.rua".into(),
                    format!("{rua:?} must start with mailto:"),
                ));
            }
        }
        if let Some(d) = &self.dkim {
            if !d.algorithms.contains(&DkimAlgorithm::Rsa) {
                return Err((
                    "dkim.algorithms".into(),
                    "rsa is required (major receivers do not verify Ed25519 alone)".into(),
                ));
            }
            if ![2048, 3072, 4096].contains(&d.rsa_bits) {
                return Err((
                    "dkim.rsa_bits".into(),
                    format!("{}: 2048, 3072 or 4096", d.rsa_bits),
                ));
            }
            if !d.selector.contains("{n}") {
                return Err((
                    "dkim.selector".into(),
                    "the pattern needs {n} so that selectors differ".into(),
                ));
            }
            let probe = d
                .selector
                .replace("{platform}", &self.id)
                .replace("{yyyymm}", "202601")
                .replace("{n}", "1");
            if probe.is_empty()
                || !probe
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                return Err((
                    "dkim.selector".into(),
                    format!("{:?} does not make a valid selector", d.selector),
                ));
            }
            match (&d.publication, &d.delegation_zone) {
                (DkimPublication::Cname, None) => {
                    return Err((
                        "dkim.delegation_zone".into(),
                        "needed for cname publication".into(),
                    ));
                }
                (_, Some(z)) => absolute("dkim.delegation_zone".into(), z)?,
                _ => {}
            }
        }
        if let Some(sts) = &self.mta_sts {
            sts.validate(!self.mx.is_empty())?;
            if let Some(h) = &sts.web_host {
                absolute("mta_sts.web_host".into(), h)?;
            }
        }
        if let Some(rpt) = &self.tls_rpt {
            rpt.validate()?;
        }
        if self.ttl > crate::zone::master::MAX_TTL {
            return Err(("ttl".into(), "too large".into()));
        }
        Ok(())
    }
}
