//! MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) as a platform offers them.
//!
//! This module owns a platform's `mta_sts` and `tls_rpt` settings, the exact policy text
//! served at `https://mta-sts.<domain>/.well-known/mta-sts.txt`, and the policy id published
//! in `_mta-sts.<domain>`: a hash of that text, so the id changes when (and only when) the
//! MX set or the policy changes. It is pure: it serves nothing and writes nothing.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// RFC 8461 §5: `enforce`, `testing` or `none`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StsMode {
    Enforce,
    #[default]
    Testing,
    None,
}

impl StsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Testing => "testing",
            Self::None => "none",
        }
    }
}

/// The longest `max_age` a policy may have (RFC 8461 §3.2: 31557600 s, about a year).
pub const MAX_AGE_LIMIT: u32 = 31_557_600;

/// A platform's MTA-STS offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtaSts {
    #[serde(default)]
    pub mode: StsMode,
    /// How long senders cache the policy, in seconds.
    #[serde(default = "default_max_age")]
    pub max_age_secs: u32,
    /// `mx:` lines of the policy (host names or `*.` patterns, RFC 8461 §4.1); empty: one
    /// line per MX host of the platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mx: Vec<String>,
    /// Where `mta-sts.<domain>` points: a CNAME to this host (the web listener's name)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_host: Option<String>,
    /// ...or A/AAAA records with these addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub web_addresses: Vec<IpAddr>,
}

fn default_max_age() -> u32 {
    604_800
}

/// A platform's TLS reporting address(es).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsRpt {
    /// `mailto:` or `https:` URIs the reports go to (RFC 8460 §3).
    pub rua: Vec<String>,
}

impl TlsRpt {
    /// The `_smtp._tls` TXT value.
    pub fn record(&self) -> String {
        format!("v=TLSRPTv1; rua={}", self.rua.join(","))
    }

    /// Checks the values serde cannot; returns the key below `tls_rpt` and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.rua.is_empty() {
            return Err((
                "tls_rpt.rua".into(),
                "at least one address is needed".into(),
            ));
        }
        for (i, uri) in self.rua.iter().enumerate() {
            let scheme_ok = uri.starts_with("mailto:") || uri.starts_with("https://");
            // ',' and '!' separate URIs and sizes in the record; ';' ends the field.
            if !scheme_ok || uri.len() < 9 || uri.contains([',', ';', '!', ' ', '"']) {
                return Err((
                    format!("tls_rpt.rua[{i}]"),
                    format!("{uri:?}: a mailto: or https:// URI without , ; ! or spaces"),
                ));
            }
        }
        Ok(())
    }
}

impl MtaSts {
    /// The `mx:` lines of the policy for a platform whose MX hosts are `mx_hosts`: the
    /// configured patterns, or each MX host without its final dot, sorted and deduplicated
    /// (so that reordering the MX set does not change the policy).
    pub fn mx_lines(&self, mx_hosts: &[&str]) -> Vec<String> {
        let source: Vec<&str> = if self.mx.is_empty() {
            mx_hosts.to_vec()
        } else {
            self.mx.iter().map(String::as_str).collect()
        };
        let mut out: Vec<String> = source
            .iter()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The policy file (RFC 8461 §3.2), CRLF line ends.
    pub fn policy(&self, mx_hosts: &[&str]) -> String {
        let mut text = format!("version: STSv1\r\nmode: {}\r\n", self.mode.as_str());
        for mx in self.mx_lines(mx_hosts) {
            text.push_str(&format!("mx: {mx}\r\n"));
        }
        text.push_str(&format!("max_age: {}\r\n", self.max_age_secs));
        text
    }

    /// Checks the values serde cannot; returns the key below `mta_sts` and why.
    pub fn validate(&self, has_mx: bool) -> Result<(), (String, String)> {
        if self.max_age_secs > MAX_AGE_LIMIT {
            return Err((
                "mta_sts.max_age_secs".into(),
                format!("{} is over {MAX_AGE_LIMIT} (RFC 8461)", self.max_age_secs),
            ));
        }
        if self.web_host.is_none() && self.web_addresses.is_empty() {
            return Err((
                "mta_sts.web_host".into(),
                "web_host or web_addresses is needed: mta-sts.<domain> must reach the web listener"
                    .into(),
            ));
        }
        if self.web_host.is_some() && !self.web_addresses.is_empty() {
            return Err((
                "mta_sts.web_addresses".into(),
                "give web_host (a CNAME) or web_addresses (A/AAAA), not both".into(),
            ));
        }
        if self.mx.is_empty() && !has_mx {
            return Err((
                "mta_sts.mx".into(),
                "the platform has no MX hosts: list the mx: patterns".into(),
            ));
        }
        for (i, m) in self.mx.iter().enumerate() {
            let bare = m.strip_prefix("*.").unwrap_or(m);
            if bare.is_empty()
                || bare.contains('*')
                || hickory_proto::rr::Name::from_ascii(bare).is_err()
                || m.contains(char::is_whitespace)
            {
                return Err((
                    format!("mta_sts.mx[{i}]"),
                    format!("{m:?} is not a host name or *. pattern"),
                ));
            }
        }
        Ok(())
    }
}

/// The policy id of a policy text: 20 hex digits of its SHA-256 (RFC 8461 §3.1 allows 1 to
/// 32 letters and digits). Equal texts give equal ids; any change gives another.
pub fn policy_id(policy: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, policy.as_bytes());
    digest.as_ref()[..10]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `_mta-sts` TXT value for a policy text.
pub fn record(policy: &str) -> String {
    format!("v=STSv1; id={}", policy_id(policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts() -> MtaSts {
        MtaSts {
            mode: StsMode::Enforce,
            max_age_secs: 86_400,
            mx: vec![],
            web_host: Some("web.mail.test.".into()),
            web_addresses: vec![],
        }
    }

    #[test]
    fn the_policy_lists_every_mx_host_once_without_the_final_dot() {
        let p = sts().policy(&["mx2.mail.test.", "mx1.mail.test.", "MX1.mail.test."]);
        assert_eq!(
            p,
            "version: STSv1\r\nmode: enforce\r\nmx: mx1.mail.test\r\nmx: mx2.mail.test\r\nmax_age: 86400\r\n"
        );
    }

    #[test]
    fn the_id_changes_with_the_mx_set_and_the_mode_and_only_then() {
        let a = policy_id(&sts().policy(&["mx1.mail.test.", "mx2.mail.test."]));
        let same = policy_id(&sts().policy(&["mx2.mail.test.", "mx1.mail.test."]));
        let other_mx = policy_id(&sts().policy(&["mx1.mail.test."]));
        let mut testing = sts();
        testing.mode = StsMode::Testing;
        let other_mode = policy_id(&testing.policy(&["mx1.mail.test.", "mx2.mail.test."]));
        assert_eq!(a, same);
        assert_ne!(a, other_mx);
        assert_ne!(a, other_mode);
        assert_eq!(a.len(), 20);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn tls_rpt_addresses_must_be_mailto_or_https() {
        let bad = TlsRpt {
            rua: vec!["tls@mail.test".into()],
        };
        assert_eq!(bad.validate().unwrap_err().0, "tls_rpt.rua[0]");
        let good = TlsRpt {
            rua: vec![
                "mailto:tls@mail.test".into(),
                "https://r.mail.test/tls".into(),
            ],
        };
        good.validate().unwrap();
        assert_eq!(
            good.record(),
            "v=TLSRPTv1; rua=mailto:tls@mail.test,https://r.mail.test/tls"
        );
    }
}
