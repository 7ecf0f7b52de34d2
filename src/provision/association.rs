//! Associations: which domain is attached to which platform, how, and what it wrote.
//!
//! This module owns the association rules (one authoritative platform per domain; MX, SRV
//! and autoconfig managed by one association at a time), the persisted form
//! (`zones/associations/<domain>.yaml`), and the plans that apply an association to a hosted zone or take
//! it out again: exactly the records it wrote are removed and the records it replaced are
//! restored, so a record the user wrote is never touched. Plans are pure; the daemon's writer
//! applies them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::rr::{Name, RData, RecordType};
use serde::{Deserialize, Serialize};

use super::platform::Platform;
use super::records::{ExpectedRecord, Families, Family};
use super::spf::SpfRecord;
use crate::zone::Zone;
use crate::zone::edit::{ChangeKind, RrsetChange};
use crate::zone::master::parse_rdata_text;
use crate::zone::writer::rdata_text;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Every mailbox of the domain is on this platform.
    Authoritative,
    /// Mailboxes are split; unknown recipients are relayed to `relay_host`.
    NonAuthoritative,
}

/// One record as stored in an association: enough to find it again and to restore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    pub value: String,
}

/// A domain attached to a platform. Persisted in `zones/associations/<domain>.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Association {
    /// Absolute, lower case.
    pub domain: String,
    pub platform: String,
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_host: Option<String>,
    pub records: Families,
    /// The token of the ownership record (`<token>-check`), for external domains.
    pub ownership_token: String,
    /// Whether the domain's zone is served here (records written) or not (listed only).
    pub hosted: bool,
    /// The SPF mechanisms this association added (the platform's at the time).
    #[serde(default)]
    pub spf_mechanisms: Vec<String>,
    /// Whether the SPF record was created by mailzone (so it may go when empty).
    #[serde(default)]
    pub spf_created: bool,
    /// Records this association wrote into the zone.
    #[serde(default)]
    pub applied: Vec<StoredRecord>,
    /// Records of the user it replaced, restored when it goes.
    #[serde(default)]
    pub replaced: Vec<StoredRecord>,
    /// Whether the user's records in the way were to be replaced (kept for reconciling).
    #[serde(default)]
    pub replace: bool,
    /// The platform's definition when the records were computed: a reconcile recomputes
    /// them when the configured platform no longer matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_platform: Option<Platform>,
    /// External domains: whether the ownership token has been seen (set by diagnosis).
    #[serde(default)]
    pub validated: bool,
    /// When the association last changed (seconds since the epoch): within a TTL of it,
    /// diagnosis reports records as pending rather than wrong.
    #[serde(default)]
    pub updated_at: u64,
    /// When the records of each family (`mx`, `spf`, `dkim`, ...) last changed (seconds
    /// since the epoch). Only these move a check to `pending`: saving an observation, a
    /// validation or any other bookkeeping does not.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub changed_at: BTreeMap<String, u64>,
    /// DKIM key generations (when the `dkim` family is on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dkim: Vec<super::dkim::DkimGeneration>,
}

/// Why an association was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// 409: another platform holds the domain authoritatively (or would be shadowed).
    #[error("authoritative domain detected: {domain} is held by platform {holder}")]
    AuthoritativeDomain { domain: String, holder: String },
    /// 409: a family only one association may manage is managed by another.
    #[error("{family} of {domain} is already managed by platform {holder}")]
    FamilyHeld {
        domain: String,
        family: &'static str,
        holder: String,
    },
    /// 409: the zone holds user data where a record must go (pass replace=true to replace it).
    #[error("{0} (pass replace=true to replace it)")]
    UserData(String),
    /// 409: more than one SPF record at the apex.
    #[error("{0} has {1} SPF records; merge them into one first")]
    SeveralSpf(String, usize),
}

impl Association {
    /// A new association with nothing applied yet.
    pub fn new(
        domain: &str,
        platform: &str,
        mode: Mode,
        records: Families,
        hosted: bool,
        ownership_token: String,
    ) -> Self {
        Self {
            domain: domain.to_string(),
            platform: platform.to_string(),
            mode,
            relay_host: None,
            records,
            ownership_token,
            hosted,
            spf_mechanisms: vec![],
            spf_created: false,
            applied: vec![],
            replaced: vec![],
            replace: false,
            applied_platform: None,
            validated: false,
            updated_at: 0,
            changed_at: BTreeMap::new(),
            dkim: vec![],
        }
    }

    /// Stamps `now` on every family whose records changed: its expected records differ
    /// between `before` and `after`, or a zone line added or removed (`touched`, in
    /// zone-file form) is one of its records.
    pub fn stamp_changes(
        &mut self,
        before: &[ExpectedRecord],
        after: &[ExpectedRecord],
        touched: &[String],
        now: u64,
    ) {
        let lines = |set: &[ExpectedRecord], family: Family| -> Vec<String> {
            let mut v: Vec<String> = set
                .iter()
                .filter(|e| e.family == family)
                .map(|e| e.line.clone())
                .collect();
            v.sort();
            v
        };
        let owns = |family: Family, line: &str| {
            let mut parts = line.splitn(5, ' ');
            let (Some(owner), _, _, Some(rtype), data) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next().unwrap_or(""),
            ) else {
                return false;
            };
            before.iter().chain(after).any(|e| {
                e.family == family
                    && e.name.eq_ignore_ascii_case(owner)
                    && e.rtype == rtype
                    // The apex TXT set holds SPF and other records: only SPF lines are SPF's.
                    && (family != Family::Spf || data.contains("v=spf1"))
            })
        };
        for family in [
            Family::Mx,
            Family::Srv,
            Family::Autoconfig,
            Family::Spf,
            Family::Dmarc,
            Family::Dkim,
            Family::Ownership,
            Family::MtaSts,
            Family::TlsRpt,
        ] {
            if lines(before, family) != lines(after, family)
                || touched.iter().any(|l| owns(family, l))
            {
                self.changed_at.insert(family.as_str().to_string(), now);
            }
        }
    }
}

/// Every association, by domain. Each domain's list is shared (`Arc`), so a change copies
/// pointers, not associations; persisted one file per domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Associations {
    by_domain: BTreeMap<String, Arc<Vec<Association>>>,
    /// Domains whose file did not load: `file:line: reason`. Their associations are not
    /// known, so changes to them are refused until the file is fixed (nothing is lost).
    broken: BTreeMap<String, String>,
}

/// The content of one domain's file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainFile {
    #[serde(default)]
    associations: Vec<Association>,
}

fn read_domain_file(path: &Path) -> Result<DomainFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let de = serde_yaml::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .location()
            .map(|l| format!(":{}", l.line()))
            .unwrap_or_default();
        format!("{}{line}: {at}: {inner}", path.display())
    })
}

/// The folder, inside the zones folder, holding one `<domain>.yaml` per associated domain.
pub const ASSOCIATIONS_DIR: &str = "associations";

/// The file of `domain` (absolute, lower case) in `dir`.
pub fn domain_file(dir: &Path, domain: &str) -> PathBuf {
    dir.join(format!("{}.yaml", domain.trim_end_matches('.')))
}

impl Associations {
    /// Reads every `<domain>.yaml` of `dir`; a missing folder is an empty set. A file that
    /// does not load is recorded as broken (`file:line: key: reason`), the rest load.
    pub fn load_dir(dir: &Path) -> Result<Self, String> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("{}: cannot read: {e}", dir.display())),
        };
        let mut out = Self::default();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".yaml") {
                continue;
            }
            let domain = format!("{}.", name.trim_end_matches(".yaml").to_ascii_lowercase());
            match read_domain_file(&path) {
                Ok(file) => {
                    for a in file.associations {
                        let list: &mut Arc<Vec<Association>> =
                            out.by_domain.entry(a.domain.clone()).or_default();
                        Arc::make_mut(list).push(a);
                    }
                }
                Err(e) => {
                    out.broken.insert(domain, e);
                }
            }
        }
        Ok(out)
    }

    /// Association files that did not load, by domain.
    pub fn broken(&self) -> &BTreeMap<String, String> {
        &self.broken
    }

    /// The YAML of one domain's file, or `None` when the domain has no association left.
    pub fn domain_yaml(&self, domain: &str) -> Option<String> {
        let list = self.by_domain.get(domain)?;
        let file = DomainFile {
            associations: list.as_ref().clone(),
        };
        Some(serde_yaml::to_string(&file).unwrap_or_default())
    }

    /// Every association, by domain then platform.
    pub fn all(&self) -> impl Iterator<Item = &Association> {
        self.by_domain.values().flat_map(|l| l.iter())
    }

    /// A copy with `association` added or replacing the one for the same domain and platform.
    pub fn with(&self, association: Association) -> Self {
        let mut out = self.clone();
        let list = Arc::make_mut(out.by_domain.entry(association.domain.clone()).or_default());
        list.retain(|a| a.platform != association.platform);
        list.push(association);
        list.sort_by(|a, b| a.platform.cmp(&b.platform));
        out
    }

    /// A copy without the association of `domain` with `platform`.
    pub fn without(&self, domain: &str, platform: &str) -> Self {
        let mut out = self.clone();
        if let Some(list) = out.by_domain.get_mut(domain) {
            Arc::make_mut(list).retain(|a| a.platform != platform);
            if list.is_empty() {
                out.by_domain.remove(domain);
            }
        }
        out
    }

    /// Marks another SPF-managing association of `domain` as owner of the SPF record.
    pub fn hand_spf_to_another(&mut self, domain: &str) {
        if let Some(list) = self.by_domain.get_mut(domain)
            && let Some(heir) = Arc::make_mut(list).iter_mut().find(|a| a.records.spf)
        {
            heir.spf_created = true;
        }
    }

    pub fn for_domain(&self, domain: &str) -> impl Iterator<Item = &Association> {
        self.by_domain
            .get(domain)
            .into_iter()
            .flat_map(|l| l.iter())
    }

    pub fn find(&self, domain: &str, platform: &str) -> Option<&Association> {
        self.for_domain(domain).find(|a| a.platform == platform)
    }

    /// Checks the product rules for a new or changed association `candidate`.
    pub fn check(&self, candidate: &Association) -> Result<(), RuleError> {
        for other in self
            .for_domain(&candidate.domain)
            .filter(|a| a.platform != candidate.platform)
        {
            if other.mode == Mode::Authoritative || candidate.mode == Mode::Authoritative {
                let holder = if other.mode == Mode::Authoritative {
                    &other.platform
                } else {
                    &candidate.platform
                };
                return Err(RuleError::AuthoritativeDomain {
                    domain: candidate.domain.clone(),
                    holder: holder.clone(),
                });
            }
            for (family, both) in [
                ("mx", candidate.records.mx && other.records.mx),
                ("srv", candidate.records.srv && other.records.srv),
                (
                    "autoconfig",
                    candidate.records.autoconfig && other.records.autoconfig,
                ),
                // One policy and one report address per domain (RFC 8461 §3.1, RFC 8460 §3).
                (
                    "mta-sts",
                    candidate.records.mta_sts && other.records.mta_sts,
                ),
                (
                    "tls-rpt",
                    candidate.records.tls_rpt && other.records.tls_rpt,
                ),
            ] {
                if both {
                    return Err(RuleError::FamilyHeld {
                        domain: candidate.domain.clone(),
                        family,
                        holder: other.platform.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Changes to a hosted zone and what the association will remember of them.
#[derive(Debug, Default)]
pub struct Plan {
    pub changes: Vec<RrsetChange>,
    pub applied: Vec<StoredRecord>,
    pub replaced: Vec<StoredRecord>,
    pub spf_mechanisms: Vec<String>,
    pub spf_created: bool,
}

fn stored(name: &Name, rtype: RecordType, ttl: u32, data: &RData) -> StoredRecord {
    StoredRecord {
        name: name.to_ascii(),
        rtype: rtype.to_string(),
        ttl,
        value: rdata_text(data),
    }
}

fn name_of(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|_| Name::root())
}

fn txt_value(data: &RData) -> Option<String> {
    match data {
        RData::TXT(t) => Some(
            t.txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s))
                .collect(),
        ),
        _ => None,
    }
}

/// The apex SPF record of `domain` in `zone`: `Ok(None)` when there is none.
fn current_spf(zone: &Zone, domain: &Name) -> Result<Option<(RData, SpfRecord)>, RuleError> {
    let found: Vec<(RData, SpfRecord)> = zone
        .view()
        .node(domain)
        .and_then(|n| n.rrset(RecordType::TXT))
        .map(|set| {
            set.records
                .iter()
                .filter_map(|r| Some((r.data.clone(), SpfRecord::parse(&txt_value(&r.data)?)?)))
                .collect()
        })
        .unwrap_or_default();
    match found.len() {
        0 | 1 => Ok(found.into_iter().next()),
        n => Err(RuleError::SeveralSpf(domain.to_ascii(), n)),
    }
}

/// Plans writing `expected` into `zone` for `domain`. With `replace`, user records in the way
/// of a CNAME are replaced (and remembered); without it they are a conflict.
pub fn plan_apply(
    zone: &Zone,
    domain: &Name,
    platform: &Platform,
    expected: &[ExpectedRecord],
    replace: bool,
) -> Result<Plan, RuleError> {
    let mut plan = Plan::default();
    let origin = zone.origin().clone();
    let mut groups: Vec<(Name, RecordType, Family, u32, Vec<RData>)> = Vec::new();
    for e in expected
        .iter()
        .filter(|e| !matches!(e.family, Family::Spf | Family::Dmarc | Family::Ownership))
    {
        let name = name_of(&e.name);
        let rtype: RecordType = e.rtype.parse().unwrap_or(RecordType::NULL);
        let Ok(data) = parse_rdata_text(rtype, &e.value, &origin) else {
            continue;
        };
        match groups.iter_mut().find(|g| g.0 == name && g.1 == rtype) {
            Some(g) => g.4.push(data),
            None => groups.push((name, rtype, e.family, e.ttl, vec![data])),
        }
    }
    let mut deletes = Vec::new();
    let mut adds = Vec::new();
    let view = zone.view();
    for (name, rtype, _family, ttl, desired) in groups {
        let node = view.node(&name);
        if rtype == RecordType::CNAME {
            let same = node
                .and_then(|n| n.rrset(RecordType::CNAME))
                .is_some_and(|s| s.records.len() == 1 && desired.contains(&s.records[0].data));
            if !same {
                for set in node.map(|n| n.rrsets.as_slice()).unwrap_or_default() {
                    let first = &set.records[0];
                    if !replace {
                        return Err(RuleError::UserData(format!(
                            "{} already has {} {}",
                            name.to_ascii(),
                            set.rtype,
                            rdata_text(&first.data)
                        )));
                    }
                    plan.replaced.extend(
                        set.records
                            .iter()
                            .map(|r| stored(&name, set.rtype, r.ttl, &r.data)),
                    );
                    deletes.push(RrsetChange {
                        kind: ChangeKind::Delete,
                        name: name.clone(),
                        rtype: set.rtype,
                        ttl: None,
                        records: vec![],
                    });
                }
            }
        } else if let Some(set) = node.and_then(|n| n.rrset(rtype)) {
            // MX and SRV sets are the platform's: what else was there is remembered.
            plan.replaced.extend(
                set.records
                    .iter()
                    .filter(|r| !desired.contains(&r.data))
                    .map(|r| stored(&name, rtype, r.ttl, &r.data)),
            );
        }
        // Records that were already there are the user's: they stay the user's.
        let existing: Vec<&RData> = node
            .and_then(|n| n.rrset(rtype))
            .map(|s| s.records.iter().map(|r| &r.data).collect())
            .unwrap_or_default();
        let fresh: Vec<&RData> = desired.iter().filter(|d| !existing.contains(d)).collect();
        if fresh.is_empty() && existing.len() == desired.len() {
            continue;
        }
        plan.applied
            .extend(fresh.into_iter().map(|d| stored(&name, rtype, ttl, d)));
        adds.push(RrsetChange {
            kind: ChangeKind::Replace,
            name,
            rtype,
            ttl: Some(ttl),
            records: desired,
        });
    }

    if let Some(e) = expected.iter().find(|e| e.family == Family::Spf) {
        plan.spf_mechanisms = platform.spf.clone();
        match current_spf(zone, domain)? {
            Some((old, mut spf)) => {
                if spf.merge(&platform.spf) {
                    deletes.push(RrsetChange {
                        kind: ChangeKind::Delete,
                        name: domain.clone(),
                        rtype: RecordType::TXT,
                        ttl: None,
                        records: vec![old],
                    });
                    adds.push(txt_add(domain, e.ttl, &spf.to_string()));
                }
            }
            None => {
                plan.spf_created = true;
                adds.push(txt_add(domain, e.ttl, &e.value));
            }
        }
    }
    if let Some(e) = expected.iter().find(|e| e.family == Family::Dmarc) {
        let name = name_of(&e.name);
        let has_dmarc = zone
            .view()
            .node(&name)
            .and_then(|n| n.rrset(RecordType::TXT))
            .is_some_and(|s| {
                s.records
                    .iter()
                    .any(|r| txt_value(&r.data).is_some_and(|v| v.starts_with("v=DMARC1")))
            });
        if !has_dmarc {
            let change = txt_add(&name, e.ttl, &e.value);
            plan.applied
                .push(stored(&name, RecordType::TXT, e.ttl, &change.records[0]));
            adds.push(change);
        }
    }
    plan.changes = deletes.into_iter().chain(adds).collect();
    Ok(plan)
}

fn txt_add(name: &Name, ttl: u32, value: &str) -> RrsetChange {
    let chunks: Vec<&[u8]> = value.as_bytes().chunks(255).collect();
    RrsetChange {
        kind: ChangeKind::Add,
        name: name.clone(),
        rtype: RecordType::TXT,
        ttl: Some(ttl),
        records: vec![RData::TXT(hickory_proto::rr::rdata::TXT::from_bytes(
            chunks,
        ))],
    }
}

/// Plans taking `association` out of `zone`: its records go, what it replaced comes back,
/// its SPF mechanisms leave the SPF record (which goes if mailzone created it and nothing
/// is left). `others` are the domain's remaining associations.
pub fn plan_remove(
    zone: &Zone,
    association: &Association,
    others: &[&Association],
) -> Result<Vec<RrsetChange>, RuleError> {
    let origin = zone.origin().clone();
    let domain = name_of(&association.domain);
    let data_of = |r: &StoredRecord| -> Option<(Name, RecordType, RData)> {
        let rtype: RecordType = r.rtype.parse().ok()?;
        let data = parse_rdata_text(rtype, &r.value, &origin).ok()?;
        Some((name_of(&r.name), rtype, data))
    };
    let mut deletes = Vec::new();
    let mut adds = Vec::new();
    for r in &association.applied {
        if let Some((name, rtype, data)) = data_of(r) {
            deletes.push(RrsetChange {
                kind: ChangeKind::Delete,
                name,
                rtype,
                ttl: None,
                records: vec![data],
            });
        }
    }
    for r in &association.replaced {
        if let Some((name, rtype, data)) = data_of(r) {
            adds.push(RrsetChange {
                kind: ChangeKind::Add,
                name,
                rtype,
                ttl: Some(r.ttl),
                records: vec![data],
            });
        }
    }
    if association.records.spf
        && let Some((old, mut spf)) = current_spf(zone, &domain)?
        && spf.remove(&association.spf_mechanisms)
    {
        deletes.push(RrsetChange {
            kind: ChangeKind::Delete,
            name: domain.clone(),
            rtype: RecordType::TXT,
            ttl: None,
            records: vec![old],
        });
        let created = association.spf_created || others.iter().any(|o| o.spf_created);
        let still_used = others.iter().any(|o| o.records.spf);
        if !(spf.authorises_nothing() && created && !still_used) {
            let ttl = zone
                .view()
                .node(&domain)
                .and_then(|n| n.rrset(RecordType::TXT))
                .map_or(3600, |s| s.records[0].ttl);
            adds.push(txt_add(&domain, ttl, &spf.to_string()));
        }
    }
    Ok(deletes.into_iter().chain(adds).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::records::expected_records;
    use std::collections::BTreeSet;

    const ZONE: &str = include_str!("../../zones/example.test.zone");

    fn zone() -> Zone {
        Zone::from_master_text(&Name::from_ascii("example.test.").unwrap(), ZONE).unwrap()
    }

    fn domain() -> Name {
        Name::from_ascii("example.test.").unwrap()
    }

    fn association(platform: &str, mode: Mode, records: Families) -> Association {
        Association::new(
            "example.test.",
            platform,
            mode,
            records,
            true,
            "t0k3n".into(),
        )
    }

    fn lines(z: &Zone) -> BTreeSet<String> {
        z.view()
            .records()
            .filter(|r| r.record_type() != RecordType::SOA)
            .map(crate::zone::writer::record_line)
            .collect()
    }

    fn spf_only() -> Families {
        Families {
            mx: false,
            srv: false,
            autoconfig: false,
            spf: true,
            dmarc: false,
            dkim: false,
            mta_sts: false,
            tls_rpt: false,
        }
    }

    fn no_autoconfig() -> Families {
        Families {
            autoconfig: false,
            ..Families::default()
        }
    }

    #[test]
    fn a_second_platform_on_an_authoritative_domain_is_refused_naming_the_holder() {
        let set = Associations::default().with(association(
            "pro1",
            Mode::Authoritative,
            Families::default(),
        ));
        let e = set
            .check(&association(
                "other",
                Mode::NonAuthoritative,
                Families::default(),
            ))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "authoritative domain detected: example.test. is held by platform pro1"
        );
    }

    #[test]
    fn two_non_authoritative_platforms_coexist_but_only_one_manages_mx() {
        let set = Associations::default().with(association(
            "pro1",
            Mode::NonAuthoritative,
            Families::default(),
        ));
        let only_spf = Families {
            mx: false,
            srv: false,
            autoconfig: false,
            spf: true,
            dmarc: true,
            dkim: false,
            mta_sts: false,
            tls_rpt: false,
        };
        assert!(
            set.check(&association("other", Mode::NonAuthoritative, only_spf))
                .is_ok()
        );
        let e = set
            .check(&association(
                "other",
                Mode::NonAuthoritative,
                Families::default(),
            ))
            .unwrap_err();
        assert!(
            matches!(e, RuleError::FamilyHeld { family: "mx", .. }),
            "{e}"
        );
    }

    #[test]
    fn user_data_in_the_way_of_autoconfig_is_a_conflict_unless_replace() {
        let p = Platform::example();
        let expected = expected_records(&domain(), &p, &Families::default(), None).unwrap();
        let e = plan_apply(&zone(), &domain(), &p, &expected, false).unwrap_err();
        assert!(
            e.to_string()
                .contains("autoconfig.example.test. already has CNAME mail.example.test."),
            "{e}"
        );
        let plan = plan_apply(&zone(), &domain(), &p, &expected, true).unwrap();
        assert!(
            plan.replaced
                .iter()
                .any(|r| r.name == "autodiscover.example.test." && r.rtype == "A")
        );
    }

    #[test]
    fn applying_merges_spf_keeps_dmarc_and_remembers_replaced_mx() {
        let p = Platform::example();
        let expected = expected_records(&domain(), &p, &no_autoconfig(), None).unwrap();
        let plan = plan_apply(&zone(), &domain(), &p, &expected, false).unwrap();
        let z = zone().with_changes(&plan.changes, 2, 3600).unwrap();
        let l = lines(&z);
        assert!(
            l.contains("example.test. 3600 IN MX 1 mx0.mail.example.net."),
            "{l:?}"
        );
        assert!(
            !l.iter().any(|x| x.contains("MX 10 mx1.example.test.")),
            "the old MX set is replaced"
        );
        assert_eq!(plan.replaced.iter().filter(|r| r.rtype == "MX").count(), 2);
        assert!(
            l.contains("example.test. 3600 IN TXT \"v=spf1 mx include:_spf.mail.example.net include:mx.mail.example.net -all\""),
            "{l:?}"
        );
        assert!(!plan.spf_created);
        assert!(
            l.iter()
                .any(|x| x.contains("_dmarc.example.test. 3600 IN TXT \"v=DMARC1; p=quarantine")),
            "DMARC kept"
        );
        assert!(!plan.applied.iter().any(|r| r.name.starts_with("_dmarc")));
    }

    #[test]
    fn removing_an_association_restores_the_zone_exactly() {
        let p = Platform::example();
        let expected = expected_records(&domain(), &p, &Families::default(), None).unwrap();
        let plan = plan_apply(&zone(), &domain(), &p, &expected, true).unwrap();
        let applied = zone().with_changes(&plan.changes, 2, 3600).unwrap();
        let mut a = association("pro1", Mode::Authoritative, Families::default());
        a.applied = plan.applied;
        a.replaced = plan.replaced;
        a.spf_mechanisms = plan.spf_mechanisms;
        a.spf_created = plan.spf_created;
        let changes = plan_remove(&applied, &a, &[]).unwrap();
        let restored = applied.with_changes(&changes, 3, 3600).unwrap();
        assert_eq!(lines(&restored), lines(&zone()));
    }

    #[test]
    fn spf_is_shared_by_two_platforms_and_shrinks_when_one_leaves() {
        let origin = domain();
        let bare = "$TTL 300\n@ SOA ns1 h 1 1 1 1 1\n@ NS ns1.other.example.\n";
        let z = Zone::from_master_text(&origin, bare).unwrap();
        let p1 = Platform::example();
        let mut p2 = Platform::example();
        p2.id = "p2".into();
        p2.spf = vec!["ip4:198.51.100.0/24".into()];
        let spf_only = spf_only();
        let plan1 = plan_apply(
            &z,
            &origin,
            &p1,
            &expected_records(&origin, &p1, &spf_only, None).unwrap(),
            false,
        )
        .unwrap();
        let z = z.with_changes(&plan1.changes, 2, 300).unwrap();
        let plan2 = plan_apply(
            &z,
            &origin,
            &p2,
            &expected_records(&origin, &p2, &spf_only, None).unwrap(),
            false,
        )
        .unwrap();
        let z = z.with_changes(&plan2.changes, 3, 300).unwrap();
        assert!(lines(&z).contains("example.test. 3600 IN TXT \"v=spf1 include:mx.mail.example.net ip4:198.51.100.0/24 ~all\""));
        let mut a1 = association("pro1", Mode::NonAuthoritative, spf_only);
        a1.spf_mechanisms = plan1.spf_mechanisms;
        a1.spf_created = plan1.spf_created;
        let mut a2 = association("p2", Mode::NonAuthoritative, spf_only);
        a2.spf_mechanisms = plan2.spf_mechanisms;
        let z = z
            .with_changes(&plan_remove(&z, &a1, &[&a2]).unwrap(), 4, 300)
            .unwrap();
        assert!(
            lines(&z).contains("example.test. 3600 IN TXT \"v=spf1 ip4:198.51.100.0/24 ~all\""),
            "{:?}",
            lines(&z)
        );
    }

    #[test]
    fn two_spf_records_are_refused() {
        let origin = domain();
        let text = "$TTL 300\n@ SOA ns1 h 1 1 1 1 1\n@ NS ns1.other.example.\n@ TXT \"v=spf1 a -all\"\n@ TXT \"v=spf1 mx -all\"\n";
        let z = Zone::from_master_text(&origin, text).unwrap();
        let p = Platform::example();
        let spf_only = spf_only();
        let e = plan_apply(
            &z,
            &origin,
            &p,
            &expected_records(&origin, &p, &spf_only, None).unwrap(),
            false,
        )
        .unwrap_err();
        assert_eq!(e, RuleError::SeveralSpf("example.test.".into(), 2));
    }
}
