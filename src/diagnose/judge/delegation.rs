//! Delegation: the NS set is found, every nameserver address answers, with authority, without
//! an error rcode, on the same SOA serial. The only judge that looks at every server.

use hickory_proto::rr::RecordType;

use super::*;

pub fn judge(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    if let Some(e) = &g.discovery_error {
        return vec![Finding::new(
            "delegation",
            "delegation.no_nameservers",
            CheckStatus::Error,
            Severity::Error,
            format!(
                "the nameservers of {} cannot be found: {e}",
                subject.domain()
            ),
        )
        .fix(vec![format!(
            "; at the registrar of {}: delegate it to nameservers that serve it (NS records in the parent zone)",
            subject.domain()
        )])];
    }
    let mut out = Vec::new();
    let soa = g
        .answers
        .get(&(subject.domain().to_string(), RecordType::SOA));
    let mut serials: BTreeMap<String, u32> = BTreeMap::new();
    for server in &g.servers {
        match soa.and_then(|m| m.get(server)) {
            None => out.push(Finding::new(
                "delegation",
                "delegation.no_address",
                CheckStatus::Error,
                Severity::Error,
                format!("{server} has no address"),
            )
            .fix(vec![format!(
                "; give {} an A or AAAA record, or remove it from the NS set (at the registrar and in the zone)",
                server.trim_end_matches(" (no address)")
            )])),
            Some(Served::Failed(e)) => out.push(
                Finding::new(
                    "delegation",
                    "delegation.unreachable",
                    CheckStatus::Error,
                    Severity::Error,
                    format!("{server} does not answer: {e}"),
                )
                .seen(BTreeMap::from([(server.clone(), vec![e.clone()])]))
                .fix(vec![format!(
                    "; bring {server} back (firewall, service, address), or remove it from the NS set at the registrar and in the zone"
                )]),
            ),
            Some(Served::Answer {
                rcode,
                authoritative,
                records,
            }) => {
                if *rcode != ResponseCode::NoError {
                    out.push(Finding::new(
                        "delegation",
                        "delegation.rcode",
                        CheckStatus::Error,
                        Severity::Error,
                        format!("{server} answers {rcode} for {}", subject.domain()),
                    )
                    .fix(vec![format!(
                        "; load the zone {} on {server} (its log says why it fails), or remove it from the NS set",
                        subject.domain()
                    )]));
                } else if !authoritative {
                    out.push(Finding::new(
                        "delegation",
                        "delegation.lame",
                        CheckStatus::Error,
                        Severity::Error,
                        format!("{server} answers without authority (lame delegation): it does not serve {}", subject.domain()),
                    )
                    .fix(vec![format!(
                        "; configure {server} as a primary or secondary of {}, or remove it from the NS set at the registrar and in the zone",
                        subject.domain()
                    )]));
                } else if let Some(serial) = records
                    .iter()
                    .find(|(t, _)| *t == RecordType::SOA)
                    .and_then(|(_, r)| r.split_whitespace().nth(2).and_then(|s| s.parse().ok()))
                {
                    serials.insert(server.clone(), serial);
                }
            }
        }
    }
    let distinct: BTreeSet<u32> = serials.values().copied().collect();
    if distinct.len() > 1 {
        let newest = distinct
            .iter()
            .copied()
            .max_by(|a, b| {
                if crate::zone::serial::serial_gt(*a, *b) {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Less
                }
            })
            .unwrap_or(0);
        let on_newest = serials.values().filter(|s| **s == newest).count();
        let behind: Vec<String> = serials
            .iter()
            .filter(|(_, s)| **s != newest)
            .map(|(n, s)| format!("{n} serves {s}"))
            .collect();
        out.push(
            Finding::new(
                "delegation",
                "delegation.serial_mismatch",
                CheckStatus::Mismatch,
                Severity::Error,
                format!(
                    "{on_newest} of {} nameservers serve serial {newest}; {}",
                    serials.len(),
                    behind.join(", ")
                ),
            )
            .seen(
                serials
                    .iter()
                    .map(|(n, s)| (n.clone(), vec![s.to_string()]))
                    .collect(),
            )
            .fix(vec![format!(
                "; make the servers behind serial {newest} transfer the zone again (NOTIFY, allow-transfer, or edit every primary)"
            )]),
        );
    }
    or_ok(
        out,
        "delegation",
        format!(
            "{} nameserver address(es) answer authoritatively with serial {}",
            g.servers.len(),
            distinct.iter().next().copied().unwrap_or(0)
        ),
    )
}
