//! E-mail platforms as declared in the configuration.
//!
//! This module owns what a platform offers (MX hosts, client endpoints, autodiscover and
//! autoconfig hosts, SPF mechanisms, DMARC default, ownership target, TTL), its validation
//! with key paths, and the example platform of the embedded defaults. It must not compute
//! records: [`super::records`] does.

use serde::{Deserialize, Serialize};

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
        }
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
        if self.ttl > crate::zone::master::MAX_TTL {
            return Err(("ttl".into(), "too large".into()));
        }
        Ok(())
    }
}
