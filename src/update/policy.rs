//! Who may change what through RFC 2136: the `update:` policy of each TSIG key.
//!
//! This module owns the decision only: may a verified key touch this zone, this name, this
//! type? A key without a policy may change nothing. It must not verify signatures
//! ([`crate::transfer::tsig`] does, before) nor look at zone data.

use std::str::FromStr;

use hickory_proto::rr::{Name, RecordType};

use crate::config::{TransferConfig, ZoneSelection};

/// The update policies of every configured key.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    keys: Vec<KeyPolicy>,
}

/// What one key may change.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    key: Name,
    /// `None`: every zone.
    zones: Option<Vec<Name>>,
    /// Empty: every name.
    names: Vec<NamePattern>,
    /// Empty: every type.
    types: Vec<RecordType>,
}

/// A name of a policy: relative to the zone or absolute, itself or every name below it.
#[derive(Debug, Clone)]
struct NamePattern {
    /// `None`: the apex (`@`).
    base: Option<Name>,
    below: bool,
}

fn absolute(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text).ok()?;
    name.set_fqdn(true);
    Some(name)
}

impl Policies {
    /// The policies of `transfer.keys` (checked at config load; what does not parse admits
    /// nothing).
    pub fn new(config: &TransferConfig) -> Self {
        let keys = config
            .keys
            .iter()
            .filter_map(|k| {
                let policy = k.update.as_ref()?;
                let zones = match &policy.zones {
                    ZoneSelection::All => None,
                    ZoneSelection::List(list) => {
                        Some(list.iter().filter_map(|z| absolute(z)).collect())
                    }
                };
                let names = policy
                    .names
                    .iter()
                    .filter_map(|n| {
                        let (below, body) = match n.strip_prefix("*.") {
                            Some(rest) => (true, rest),
                            None => (false, n.as_str()),
                        };
                        let base = if body == "@" {
                            None
                        } else {
                            let mut name = Name::from_ascii(body).ok()?;
                            name.set_fqdn(body.ends_with('.'));
                            Some(name)
                        };
                        Some(NamePattern { base, below })
                    })
                    .collect();
                let types = policy
                    .types
                    .iter()
                    .filter_map(|t| RecordType::from_str(&t.to_ascii_uppercase()).ok())
                    .collect();
                Some(KeyPolicy {
                    key: absolute(&k.name)?,
                    zones,
                    names,
                    types,
                })
            })
            .collect();
        Self { keys }
    }

    /// The policy of a verified key, if it has one.
    pub fn for_key(&self, key: &Name) -> Option<&KeyPolicy> {
        self.keys.iter().find(|p| p.key == *key)
    }
}

impl KeyPolicy {
    pub fn allows_zone(&self, zone: &Name) -> bool {
        self.zones
            .as_ref()
            .is_none_or(|zones| zones.iter().any(|z| z == zone))
    }

    /// May it touch `name` in `zone`, for the type `rtype` (`None`: every type of the name,
    /// as a name's deletion does; then only a key without a type list may).
    pub fn allows(&self, zone: &Name, name: &Name, rtype: Option<RecordType>) -> bool {
        let type_ok = match rtype {
            Some(t) => self.types.is_empty() || self.types.contains(&t),
            None => self.types.is_empty(),
        };
        type_ok && self.allows_name(zone, name)
    }

    /// May it touch some type at `name` in `zone`.
    pub fn allows_name(&self, zone: &Name, name: &Name) -> bool {
        if self.names.is_empty() {
            return true;
        }
        self.names.iter().any(|p| {
            let base = match &p.base {
                None => zone.clone(),
                Some(b) if b.is_fqdn() => b.clone(),
                Some(b) => match b.clone().append_domain(zone) {
                    Ok(n) => n,
                    Err(_) => return false,
                },
            };
            if p.below {
                base.zone_of(name) && base != *name
            } else {
                base == *name
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TsigKeyConfig, UpdatePolicy};

    fn policies(names: &[&str], types: &[&str], zones: ZoneSelection) -> Policies {
        Policies::new(&TransferConfig {
            keys: vec![TsigKeyConfig {
                name: "acme".into(),
                algorithm: Default::default(),
                update: Some(UpdatePolicy {
                    zones,
                    names: names.iter().map(|s| s.to_string()).collect(),
                    types: types.iter().map(|s| s.to_string()).collect(),
                }),
            }],
            ..TransferConfig::default()
        })
    }

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn an_acme_key_may_touch_only_its_challenge_txt_in_its_zones() {
        let p = policies(
            &["_acme-challenge", "*._acme-challenge.example.test."],
            &["txt"],
            ZoneSelection::List(vec!["example.test.".into()]),
        );
        let k = p.for_key(&n("acme.")).unwrap();
        let zone = n("example.test.");
        assert!(k.allows_zone(&zone));
        assert!(!k.allows_zone(&n("other.test.")));
        let challenge = n("_acme-challenge.example.test.");
        assert!(k.allows(&zone, &challenge, Some(RecordType::TXT)));
        assert!(!k.allows(&zone, &challenge, Some(RecordType::A)));
        assert!(!k.allows(&zone, &challenge, None));
        assert!(!k.allows(&zone, &n("www.example.test."), Some(RecordType::TXT)));
        assert!(k.allows(
            &zone,
            &n("x._acme-challenge.example.test."),
            Some(RecordType::TXT)
        ));
        assert!(p.for_key(&n("other.")).is_none());
    }

    #[test]
    fn a_key_without_lists_may_touch_every_name_and_type_of_every_zone() {
        let p = policies(&[], &[], ZoneSelection::All);
        let k = p.for_key(&n("acme.")).unwrap();
        assert!(k.allows_zone(&n("any.test.")));
        assert!(k.allows(&n("any.test."), &n("a.any.test."), None));
    }
}
