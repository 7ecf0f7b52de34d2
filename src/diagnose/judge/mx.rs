//! MX: the platform's MX set, and in authoritative mode no other platform's hosts.

use hickory_proto::rr::RecordType;

use super::*;

pub fn judge(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    let expected = expected_of(subject, Family::Mx);
    let mut out = set_check("mx", "the MX set", &expected, g, RecordType::MX);
    if out.is_empty() && subject.association.mode == Mode::Authoritative {
        let p = per_server(g, subject.domain(), RecordType::MX);
        let served = consensus("mx", "the MX set", &p).unwrap_or_default();
        let want: Vec<String> = expected
            .iter()
            .map(|e| normalise(RecordType::MX, &e.value))
            .collect();
        let others: Vec<&String> = served
            .iter()
            .filter(|s| !want.contains(&normalise(RecordType::MX, s)))
            .collect();
        if !others.is_empty() {
            out.push(
                Finding::new("mx", "mx.other_platform", CheckStatus::Conflict, Severity::Error, format!("MX hosts of another platform receive mail of this authoritative domain: {}", others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")))
                    .seen(seen_map(&p))
                    .fix(others.iter().map(|o| format!("; remove: {} IN MX {o}", subject.domain())).collect()),
            );
        }
    }
    or_ok(
        out,
        "mx",
        "the platform's MX set is served by every nameserver",
    )
}

