//! Autoconfig: the autoconfig/autodiscover CNAMEs point to the platform.

use hickory_proto::rr::RecordType;

use super::*;

pub fn judge(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    let expected = expected_of(subject, Family::Autoconfig);
    let mut out = Vec::new();
    for e in &expected {
        let p = per_server(g, &e.name, RecordType::CNAME);
        let served = match consensus("autoconfig", &e.name, &p) {
            Ok(s) => s,
            Err(f) => {
                out.push((*f).fix(vec![e.line.clone()]));
                continue;
            }
        };
        if served.is_empty() {
            out.push(
                Finding::new(
                    "autoconfig",
                    "autoconfig.missing",
                    CheckStatus::Missing,
                    Severity::Warning,
                    format!("{} is missing", e.name),
                )
                .expected(vec![e.line.clone()])
                .seen(seen_map(&p))
                .fix(vec![e.line.clone()]),
            );
        } else if normalise(RecordType::CNAME, &served[0]) != normalise(RecordType::CNAME, &e.value)
        {
            out.push(
                Finding::new("autoconfig", "autoconfig.stale", CheckStatus::Conflict, Severity::Warning, format!("{} points to {} (another provider): clients may take it over the SRV records", e.name, served[0]))
                    .expected(vec![e.line.clone()])
                    .seen(seen_map(&p))
                    .fix(vec![e.line.clone()])
                    .remove(vec![crate::provision::records::zone_line(&e.name, RecordType::CNAME, &served[0])]),
            );
        }
    }
    or_ok(
        out,
        "autoconfig",
        "autoconfig and autodiscover point to the platform",
    )
}
