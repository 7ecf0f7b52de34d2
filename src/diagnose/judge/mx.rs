//! MX: the platform's MX set, and in authoritative mode no other platform's hosts (listed in
//! the same finding as lines to remove).

use hickory_proto::rr::RecordType;

use super::*;
use crate::provision::records::zone_line;

pub fn judge(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    let expected = expected_of(subject, Family::Mx);
    let mut out = set_check("mx", "the MX set", &expected, g, RecordType::MX);
    if subject.association.mode != Mode::Authoritative {
        return or_ok(
            out,
            "mx",
            "the platform's MX set is served by every nameserver",
        );
    }
    // Authoritative: the platform receives all the domain's mail; other hosts must go.
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
    let remove: Vec<String> = others
        .iter()
        .map(|o| zone_line(subject.domain(), RecordType::MX, o))
        .collect();
    if let Some(f) = out.iter_mut().find(|f| f.code == "mx.mismatch") {
        f.remove = remove;
    } else if out.is_empty() && !others.is_empty() {
        out.push(
            Finding::new(
                "mx",
                "mx.other_platform",
                CheckStatus::Conflict,
                Severity::Error,
                format!(
                    "MX hosts of another platform receive mail of this authoritative domain: {}",
                    others
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .seen(seen_map(&p))
            .remove(remove),
        );
    }
    or_ok(
        out,
        "mx",
        "the platform's MX set is served by every nameserver",
    )
}
