//! DKIM selectors of an association: their generations, states and published records.
//!
//! A generation is the set of keys made together (one per algorithm of the platform's
//! policy), under selectors that differ by generation number. States move one way:
//! `generated` → `published` (record served or pasted) → `active` (signing) → `retiring`
//! (still published, no longer signing) → removed (record and key gone). At any time there
//! is at most one active generation and one successor. This module decides; the daemon's
//! writer does the key I/O and the zone writes.

use hickory_proto::rr::{Name, RecordType};
use serde::{Deserialize, Serialize};

use super::platform::{DkimPolicy, DkimPublication, Platform};
use super::records::{ExpectedRecord, Family};
use crate::dkim::DkimAlgorithm;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectorState {
    Generated,
    Published,
    Active,
    Retiring,
}

/// One key of a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKey {
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    /// The `p=` value.
    pub public: String,
}

/// Keys made together and moving through the states together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimGeneration {
    pub n: u32,
    pub keys: Vec<DkimKey>,
    pub state: SelectorState,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_since: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_since: Option<u64>,
}

/// The selector names of generation `n` under `policy`.
pub fn selector_names(
    policy: &DkimPolicy,
    platform: &str,
    n: u32,
    now: u64,
) -> Vec<(DkimAlgorithm, String)> {
    let (y, m, _) = crate::zone::serial::civil_date(now);
    let base = policy
        .selector
        .replace("{platform}", platform)
        .replace("{yyyymm}", &format!("{y:04}{m:02}"))
        .replace("{n}", &n.to_string());
    let several = policy.algorithms.len() > 1;
    policy
        .algorithms
        .iter()
        .map(|a| {
            let name = if several {
                format!("{base}-{}", a.key_type())
            } else {
                base.clone()
            };
            (*a, name.to_ascii_lowercase())
        })
        .collect()
}

/// Whether records of external domains are served by us in the delegation zone.
pub fn delegated(platform: &Platform, hosted: bool) -> Option<Name> {
    let policy = platform.dkim.as_ref()?;
    if hosted || policy.publication != DkimPublication::Cname {
        return None;
    }
    policy
        .delegation_zone
        .as_deref()
        .and_then(|z| Name::from_ascii(z).ok())
}

/// The name of a selector's key record in the delegation zone.
pub fn delegated_name(selector: &str, domain: &Name, zone: &Name) -> String {
    format!(
        "{selector}._domainkey.{}{}",
        domain.to_ascii(),
        zone.to_ascii()
    )
}

/// The DKIM records the domain's own zone needs: the key TXT, or (cname publication of an
/// external domain) a CNAME into the delegation zone.
pub fn expected_dkim(
    domain: &Name,
    platform: &Platform,
    generations: &[DkimGeneration],
    hosted: bool,
) -> Vec<ExpectedRecord> {
    let delegation = delegated(platform, hosted);
    let mut out = Vec::new();
    for g in generations {
        for k in &g.keys {
            let owner = format!("{}._domainkey.{}", k.selector, domain.to_ascii());
            let owner = Name::from_ascii(&owner).unwrap_or_else(|_| domain.clone());
            match &delegation {
                Some(zone) => out.push(ExpectedRecord::new(
                    Family::Dkim,
                    &owner,
                    RecordType::CNAME,
                    platform.ttl,
                    delegated_name(&k.selector, domain, zone),
                )),
                None => out.push(ExpectedRecord::new(
                    Family::Dkim,
                    &owner,
                    RecordType::TXT,
                    platform.ttl,
                    crate::dkim::key_record(k.algorithm, &k.public),
                )),
            }
        }
    }
    out
}

/// The generation that signs, if any.
pub fn active(generations: &[DkimGeneration]) -> Option<&DkimGeneration> {
    generations
        .iter()
        .find(|g| g.state == SelectorState::Active)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_follow_the_pattern_and_name_the_algorithm_when_several() {
        let mut p = DkimPolicy::default();
        assert_eq!(
            selector_names(&p, "pro1", 3, 1_795_428_000),
            [(DkimAlgorithm::Rsa, "pro1-202611-3".to_string())]
        );
        p.algorithms.push(DkimAlgorithm::Ed25519);
        let names: Vec<String> = selector_names(&p, "pro1", 1, 1_795_428_000)
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        assert_eq!(names, ["pro1-202611-1-rsa", "pro1-202611-1-ed25519"]);
    }
}
