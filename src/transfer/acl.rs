//! The transfer ACL: may a peer at this IP, with this TSIG key (or none), transfer this zone?
//!
//! This module owns the decision only, made from `transfer.secondaries`: an entry matches
//! the peer's IP (any port), its key (an entry with a `key` admits only requests verified
//! with that key; an entry without one admits unsigned requests too) and its zones (`all`
//! or a list). It must not verify signatures ([`super::tsig`] does, before) nor build answers.

use std::net::IpAddr;

use hickory_proto::rr::Name;

use crate::config::{TransferConfig, ZoneSelection};

#[derive(Debug, Clone, Default)]
pub struct Acl {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    ip: IpAddr,
    key: Option<Name>,
    /// `None`: every zone.
    zones: Option<Vec<Name>>,
}

impl Acl {
    /// The ACL of the configured secondaries. Entries whose address, key name or zone names
    /// do not parse admit nothing (config validation reports them).
    pub fn new(config: &TransferConfig) -> Self {
        let entries = config
            .secondaries
            .iter()
            .filter_map(|s| {
                let ip = s.socket_addr()?.ip();
                let key = match &s.key {
                    Some(k) => {
                        // Compared with the key name of a verified request, always absolute.
                        let mut k = Name::from_ascii(k).ok()?;
                        k.set_fqdn(true);
                        Some(k)
                    }
                    None => None,
                };
                let zones = match &s.zones {
                    ZoneSelection::All => None,
                    ZoneSelection::List(list) => Some(
                        list.iter()
                            .filter_map(|z| Name::from_ascii(z).ok())
                            .map(|mut z| {
                                z.set_fqdn(true);
                                z
                            })
                            .collect(),
                    ),
                };
                Some(Entry { ip, key, zones })
            })
            .collect();
        Self { entries }
    }

    /// No secondary configured: every transfer is refused.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when some entry lets `ip`, signed with `key` (verified) or unsigned (`None`),
    /// transfer `zone`.
    pub fn allows(&self, ip: IpAddr, key: Option<&Name>, zone: &Name) -> bool {
        let ip = canonical(ip);
        self.entries.iter().any(|e| {
            canonical(e.ip) == ip
                && match (&e.key, key) {
                    (None, _) => true,
                    (Some(wanted), Some(got)) => wanted == got,
                    (Some(_), None) => false,
                }
                && e.zones
                    .as_ref()
                    .is_none_or(|zones| zones.iter().any(|z| z == zone))
        })
    }
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecondaryConfig;

    type Entry<'a> = (&'a str, Option<&'a str>, Option<&'a [&'a str]>);

    fn acl(entries: &[Entry]) -> Acl {
        Acl::new(&TransferConfig {
            keys: Vec::new(),
            secondaries: entries
                .iter()
                .map(|(a, k, z)| SecondaryConfig {
                    address: a.to_string(),
                    key: k.map(str::to_string),
                    zones: match z {
                        None => ZoneSelection::All,
                        Some(list) => {
                            ZoneSelection::List(list.iter().map(|s| s.to_string()).collect())
                        }
                    },
                })
                .collect(),
            ..TransferConfig::default()
        })
    }

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn an_entry_with_a_key_admits_only_that_key() {
        let a = acl(&[("127.0.0.2:5300", Some("k1"), None)]);
        let ip = "127.0.0.2".parse().unwrap();
        assert!(a.allows(ip, Some(&n("k1.")), &n("example.test.")));
        assert!(!a.allows(ip, Some(&n("k2.")), &n("example.test.")));
        assert!(!a.allows(ip, None, &n("example.test.")));
        assert!(!a.allows(
            "127.0.0.3".parse().unwrap(),
            Some(&n("k1.")),
            &n("example.test.")
        ));
    }

    #[test]
    fn an_entry_without_a_key_admits_unsigned_requests_for_its_zones_only() {
        let a = acl(&[("127.0.0.2", None, Some(&["a.test"]))]);
        let ip = "127.0.0.2".parse().unwrap();
        assert!(a.allows(ip, None, &n("A.test.")));
        assert!(!a.allows(ip, None, &n("b.test.")));
    }
}
