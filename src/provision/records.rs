//! The records an association expects, computed from the platform, the mode and the chosen
//! families.
//!
//! This module owns the exact shape of every generated record (owner, type, TTL, value and
//! its zone-file line) and a stable id for each, so that applying, diffing, listing and
//! diagnosing all speak of the same records. It is pure: the zone's current content enters
//! only through the SPF and DMARC decisions of the applier, not here.

use hickory_proto::rr::{Name, RecordType};
use serde::{Deserialize, Serialize};

use super::platform::{Platform, Security, Service};

/// A family of records that can be managed (DKIM will be one more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Mx,
    Srv,
    Autoconfig,
    Spf,
    Dmarc,
    Dkim,
    Ownership,
    #[serde(rename = "mta-sts")]
    MtaSts,
    #[serde(rename = "tls-rpt")]
    TlsRpt,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Mx => "mx",
            Family::Srv => "srv",
            Family::Autoconfig => "autoconfig",
            Family::Spf => "spf",
            Family::Dmarc => "dmarc",
            Family::Dkim => "dkim",
            Family::Ownership => "ownership",
            Family::MtaSts => "mta-sts",
            Family::TlsRpt => "tls-rpt",
        }
    }
}

/// Which families an association manages; all by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Families {
    pub mx: bool,
    pub srv: bool,
    pub autoconfig: bool,
    pub spf: bool,
    pub dmarc: bool,
    /// DKIM keys generated, published and rotated by mailzone (off unless asked for).
    pub dkim: bool,
    /// MTA-STS: `_mta-sts` TXT and `mta-sts.<domain>` to the web listener (off unless asked
    /// for: the platform must serve the policy over HTTPS first).
    #[serde(rename = "mta-sts", alias = "mta_sts")]
    pub mta_sts: bool,
    /// TLS-RPT: `_smtp._tls` TXT (off unless asked for).
    #[serde(rename = "tls-rpt", alias = "tls_rpt")]
    pub tls_rpt: bool,
}

impl Default for Families {
    fn default() -> Self {
        Self {
            mx: true,
            srv: true,
            autoconfig: true,
            spf: true,
            dmarc: true,
            dkim: false,
            mta_sts: false,
            tls_rpt: false,
        }
    }
}

/// A change of families: only the families named change (`{"srv": false}` leaves the
/// others as they are).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FamiliesPatch {
    pub mx: Option<bool>,
    pub srv: Option<bool>,
    pub autoconfig: Option<bool>,
    pub spf: Option<bool>,
    pub dmarc: Option<bool>,
    pub dkim: Option<bool>,
    #[serde(rename = "mta-sts", alias = "mta_sts")]
    pub mta_sts: Option<bool>,
    #[serde(rename = "tls-rpt", alias = "tls_rpt")]
    pub tls_rpt: Option<bool>,
}

impl FamiliesPatch {
    /// `current` with the named families set.
    pub fn apply(&self, current: Families) -> Families {
        Families {
            mx: self.mx.unwrap_or(current.mx),
            srv: self.srv.unwrap_or(current.srv),
            autoconfig: self.autoconfig.unwrap_or(current.autoconfig),
            spf: self.spf.unwrap_or(current.spf),
            dmarc: self.dmarc.unwrap_or(current.dmarc),
            dkim: self.dkim.unwrap_or(current.dkim),
            mta_sts: self.mta_sts.unwrap_or(current.mta_sts),
            tls_rpt: self.tls_rpt.unwrap_or(current.tls_rpt),
        }
    }
}

/// One record the platform needs in the domain's zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedRecord {
    /// Stable across recomputations: `family/owner/TYPE/value`.
    pub id: String,
    pub family: Family,
    /// Absolute owner name.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    /// Record data in zone-file form.
    pub value: String,
    /// The exact line to paste into a zone file.
    pub line: String,
}

/// A family the platform cannot provide; names the missing setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("platform {platform} cannot provide {family}: {missing} is not configured")]
pub struct MissingSetting {
    pub platform: String,
    pub family: &'static str,
    pub missing: &'static str,
}

impl ExpectedRecord {
    pub fn new(family: Family, name: &Name, rtype: RecordType, ttl: u32, value: String) -> Self {
        let name = name.to_ascii();
        Self {
            id: format!("{}/{}/{}/{}", family.as_str(), name, rtype, value),
            line: format!("{name} {ttl} IN {rtype} {}", quote_if_txt(rtype, &value)),
            family,
            name,
            rtype: rtype.to_string(),
            ttl,
            value,
        }
    }
}

/// A zone line without TTL (what to remove: the TTL does not matter).
pub fn zone_line(name: &str, rtype: RecordType, value: &str) -> String {
    format!("{name} IN {rtype} {}", quote_if_txt(rtype, value))
}

/// TXT values are shown quoted (and split at 255 bytes) in zone lines.
fn quote_if_txt(rtype: RecordType, value: &str) -> String {
    if rtype != RecordType::TXT {
        return value.to_string();
    }
    value
        .as_bytes()
        .chunks(255)
        .map(|c| {
            let s = String::from_utf8_lossy(c)
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            format!("\"{s}\"")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The SRV owner label for a service offered with a given security (RFC 6186, RFC 8314).
fn srv_label(service: Service, security: Security) -> &'static str {
    match (service, security) {
        (Service::Imap, Security::ImplicitTls) => "_imaps._tcp",
        (Service::Imap, Security::Starttls) => "_imap._tcp",
        (Service::Pop3, Security::ImplicitTls) => "_pop3s._tcp",
        (Service::Pop3, Security::Starttls) => "_pop3._tcp",
        (Service::Submission, Security::ImplicitTls) => "_submissions._tcp",
        (Service::Submission, Security::Starttls) => "_submission._tcp",
    }
}

fn child(domain: &Name, label: &str) -> Name {
    // Labels here are fixed, valid ASCII: parsing cannot fail.
    Name::from_ascii(format!("{label}.{}", domain.to_ascii())).unwrap_or_else(|_| domain.clone())
}

/// Every record an association needs: its families' records and the DKIM keys of all its
/// generations. The one list behind the POST response's `to_paste`, the GET view's
/// `expected` and `mailzone domain records`, so they cannot differ.
pub fn association_records(
    association: &super::association::Association,
    platform: &Platform,
) -> Result<Vec<ExpectedRecord>, MissingSetting> {
    let domain = Name::from_ascii(&association.domain).unwrap_or_else(|_| Name::root());
    let token = (!association.hosted).then_some(association.ownership_token.as_str());
    let mut expected = expected_records(&domain, platform, &association.records, token)?;
    if association.records.dkim {
        expected.extend(super::dkim::expected_dkim(
            &domain,
            platform,
            &association.dkim,
            association.hosted,
        ));
    }
    Ok(expected)
}

/// Every record of the chosen families for `domain` on `platform`. SPF is given as the
/// record mailzone would create; on a hosted zone the applier merges it into an existing one.
/// `ownership_token` adds the `<token>-check` CNAME (external domains).
pub fn expected_records(
    domain: &Name,
    platform: &Platform,
    families: &Families,
    ownership_token: Option<&str>,
) -> Result<Vec<ExpectedRecord>, MissingSetting> {
    let missing = |family: &'static str, missing: &'static str| MissingSetting {
        platform: platform.id.clone(),
        family,
        missing,
    };
    let ttl = platform.ttl;
    let mut out = Vec::new();
    if families.mx {
        if platform.mx.is_empty() {
            return Err(missing("mx", "mx"));
        }
        let mut mx = platform.mx.clone();
        mx.sort_by_key(|m| m.priority);
        for m in mx {
            out.push(ExpectedRecord::new(
                Family::Mx,
                domain,
                RecordType::MX,
                ttl,
                format!("{} {}", m.priority, m.host),
            ));
        }
    }
    if families.srv {
        if platform.endpoints.is_empty() && platform.autodiscover_host.is_none() {
            return Err(missing("srv", "endpoints"));
        }
        if let Some(host) = &platform.autodiscover_host {
            out.push(ExpectedRecord::new(
                Family::Srv,
                &child(domain, "_autodiscover._tcp"),
                RecordType::SRV,
                ttl,
                format!("0 0 443 {host}"),
            ));
        }
        for e in &platform.endpoints {
            // Implicit TLS is preferred over STARTTLS by priority (RFC 8314 §5.1).
            let priority = match e.security {
                Security::ImplicitTls => 0,
                Security::Starttls => 10,
            };
            out.push(ExpectedRecord::new(
                Family::Srv,
                &child(domain, srv_label(e.service, e.security)),
                RecordType::SRV,
                ttl,
                format!("{priority} 1 {} {}", e.port, e.host),
            ));
        }
        // Plaintext services the platform does not offer: "not available" (RFC 6186 §3.4).
        for (service, label) in [(Service::Imap, "_imap._tcp"), (Service::Pop3, "_pop3._tcp")] {
            let offered = platform
                .endpoints
                .iter()
                .any(|e| e.service == service && e.security == Security::Starttls);
            if !offered {
                out.push(ExpectedRecord::new(
                    Family::Srv,
                    &child(domain, label),
                    RecordType::SRV,
                    ttl,
                    "0 0 0 .".into(),
                ));
            }
        }
    }
    if families.autoconfig {
        let Some(host) = &platform.autoconfig_host else {
            return Err(missing("autoconfig", "autoconfig_host"));
        };
        for label in ["autoconfig", "autodiscover"] {
            out.push(ExpectedRecord::new(
                Family::Autoconfig,
                &child(domain, label),
                RecordType::CNAME,
                ttl,
                host.clone(),
            ));
        }
    }
    if families.spf {
        if platform.spf.is_empty() {
            return Err(missing("spf", "spf"));
        }
        let spf = super::spf::SpfRecord::new(&platform.spf).to_string();
        out.push(ExpectedRecord::new(
            Family::Spf,
            domain,
            RecordType::TXT,
            ttl,
            spf,
        ));
    }
    if families.dmarc {
        let Some(d) = &platform.dmarc else {
            return Err(missing("dmarc", "dmarc"));
        };
        let mut value = format!("v=DMARC1; p={}", d.policy);
        if let Some(rua) = &d.rua {
            value.push_str(&format!("; rua={rua}"));
        }
        out.push(ExpectedRecord::new(
            Family::Dmarc,
            &child(domain, "_dmarc"),
            RecordType::TXT,
            ttl,
            value,
        ));
    }
    if families.mta_sts {
        let (Some(sts), Some(policy)) = (&platform.mta_sts, platform.mta_sts_policy()) else {
            return Err(missing("mta-sts", "mta_sts"));
        };
        out.push(ExpectedRecord::new(
            Family::MtaSts,
            &child(domain, "_mta-sts"),
            RecordType::TXT,
            ttl,
            super::mta_sts::record(&policy),
        ));
        let web = child(domain, "mta-sts");
        if let Some(host) = &sts.web_host {
            out.push(ExpectedRecord::new(
                Family::MtaSts,
                &web,
                RecordType::CNAME,
                ttl,
                host.clone(),
            ));
        }
        for ip in &sts.web_addresses {
            let rtype = if ip.is_ipv4() {
                RecordType::A
            } else {
                RecordType::AAAA
            };
            out.push(ExpectedRecord::new(
                Family::MtaSts,
                &web,
                rtype,
                ttl,
                ip.to_string(),
            ));
        }
    }
    if families.tls_rpt {
        let Some(rpt) = &platform.tls_rpt else {
            return Err(missing("tls-rpt", "tls_rpt"));
        };
        out.push(ExpectedRecord::new(
            Family::TlsRpt,
            &child(domain, "_smtp._tls"),
            RecordType::TXT,
            ttl,
            rpt.record(),
        ));
    }
    if let Some(token) = ownership_token {
        let Some(target) = &platform.ownership_target else {
            return Err(missing("ownership", "ownership_target"));
        };
        out.push(ExpectedRecord::new(
            Family::Ownership,
            &child(domain, &format!("{token}-check")),
            RecordType::CNAME,
            ttl,
            target.clone(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Name {
        Name::from_ascii("shop.test.").unwrap()
    }

    #[test]
    fn the_example_platform_gives_five_mx_in_priority_order() {
        let r =
            expected_records(&domain(), &Platform::example(), &Families::default(), None).unwrap();
        let mx: Vec<&str> = r
            .iter()
            .filter(|r| r.family == Family::Mx)
            .map(|r| r.value.as_str())
            .collect();
        assert_eq!(
            mx,
            [
                "1 mx0.mail.example.net.",
                "5 mx1.mail.example.net.",
                "50 mx2.mail.example.net.",
                "100 mx3.mail.example.net.",
                "200 mx4.mail.example.net."
            ]
        );
        assert_eq!(r[0].line, "shop.test. 3600 IN MX 1 mx0.mail.example.net.");
    }

    #[test]
    fn srv_records_prefer_implicit_tls_and_mark_missing_plaintext_services() {
        let r =
            expected_records(&domain(), &Platform::example(), &Families::default(), None).unwrap();
        let srv: Vec<String> = r
            .iter()
            .filter(|r| r.family == Family::Srv)
            .map(|r| format!("{} {}", r.name, r.value))
            .collect();
        assert!(
            srv.contains(
                &"_autodiscover._tcp.shop.test. 0 0 443 pro1.mail.example.net.".to_string()
            ),
            "{srv:?}"
        );
        assert!(
            srv.contains(&"_imaps._tcp.shop.test. 0 1 993 pro1.mail.example.net.".to_string()),
            "{srv:?}"
        );
        assert!(
            srv.contains(
                &"_submissions._tcp.shop.test. 0 1 465 pro1.mail.example.net.".to_string()
            ),
            "{srv:?}"
        );
        assert!(
            srv.contains(
                &"_submission._tcp.shop.test. 10 1 587 pro1.mail.example.net.".to_string()
            ),
            "{srv:?}"
        );
        assert!(
            srv.contains(&"_imap._tcp.shop.test. 0 0 0 .".to_string()),
            "{srv:?}"
        );
        assert!(
            srv.contains(&"_pop3._tcp.shop.test. 0 0 0 .".to_string()),
            "{srv:?}"
        );
    }

    #[test]
    fn a_family_the_platform_cannot_provide_names_the_setting() {
        let mut p = Platform::example();
        p.autoconfig_host = None;
        let e = expected_records(&domain(), &p, &Families::default(), None).unwrap_err();
        assert_eq!(e.missing, "autoconfig_host");
    }

    fn with_mail_security() -> Families {
        Families {
            mta_sts: true,
            tls_rpt: true,
            ..Families::default()
        }
    }

    #[test]
    fn mta_sts_publishes_the_policy_id_and_points_mta_sts_at_the_web_listener() {
        let p = Platform::example();
        let r = expected_records(&domain(), &p, &with_mail_security(), None).unwrap();
        let sts: Vec<&str> = r
            .iter()
            .filter(|r| r.family == Family::MtaSts)
            .map(|r| r.line.as_str())
            .collect();
        let id = crate::provision::mta_sts::policy_id(&p.mta_sts_policy().unwrap());
        assert_eq!(
            sts,
            [
                format!("_mta-sts.shop.test. 3600 IN TXT \"v=STSv1; id={id}\""),
                "mta-sts.shop.test. 3600 IN CNAME pro1.mail.example.net.".to_string()
            ]
        );
        let rpt = r.iter().find(|r| r.family == Family::TlsRpt).unwrap();
        assert_eq!(
            rpt.line,
            "_smtp._tls.shop.test. 3600 IN TXT \"v=TLSRPTv1; rua=mailto:tls-reports@mail.example.net\""
        );
    }

    #[test]
    fn mta_sts_with_addresses_gives_a_and_aaaa_records() {
        let mut p = Platform::example();
        let sts = p.mta_sts.as_mut().unwrap();
        sts.web_host = None;
        sts.web_addresses = vec!["192.0.2.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
        let r = expected_records(&domain(), &p, &with_mail_security(), None).unwrap();
        let web: Vec<(&str, &str)> = r
            .iter()
            .filter(|r| r.name == "mta-sts.shop.test.")
            .map(|r| (r.rtype.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(web, [("A", "192.0.2.7"), ("AAAA", "2001:db8::7")]);
    }

    #[test]
    fn changing_the_mx_set_changes_the_mta_sts_id() {
        let p = Platform::example();
        let before = expected_records(&domain(), &p, &with_mail_security(), None).unwrap();
        let mut q = p.clone();
        q.mx.pop();
        let after = expected_records(&domain(), &q, &with_mail_security(), None).unwrap();
        let id = |set: &[ExpectedRecord]| {
            set.iter()
                .find(|r| r.name == "_mta-sts.shop.test.")
                .unwrap()
                .value
                .clone()
        };
        assert_ne!(id(&before), id(&after));
        assert_eq!(
            id(&before),
            id(&expected_records(&domain(), &p, &with_mail_security(), None).unwrap())
        );
    }

    #[test]
    fn mta_sts_is_refused_for_a_platform_without_the_setting() {
        let mut p = Platform::example();
        p.mta_sts = None;
        let e = expected_records(&domain(), &p, &with_mail_security(), None).unwrap_err();
        assert_eq!(e.missing, "mta_sts");
    }

    #[test]
    fn ids_are_stable_and_txt_lines_are_quoted() {
        let a = expected_records(
            &domain(),
            &Platform::example(),
            &Families::default(),
            Some("abc123"),
        )
        .unwrap();
        let b = expected_records(
            &domain(),
            &Platform::example(),
            &Families::default(),
            Some("abc123"),
        )
        .unwrap();
        assert_eq!(a, b);
        let spf = a.iter().find(|r| r.family == Family::Spf).unwrap();
        assert_eq!(
            spf.line,
            "shop.test. 3600 IN TXT \"v=spf1 include:mx.mail.example.net ~all\""
        );
        let own = a.iter().find(|r| r.family == Family::Ownership).unwrap();
        assert_eq!(
            own.line,
            "abc123-check.shop.test. 3600 IN CNAME check.mail.example.net."
        );
    }
}
