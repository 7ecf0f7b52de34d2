//! Ownership: the token CNAME of an external domain.

use hickory_proto::rr::RecordType;

use super::*;

pub fn judge(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    let Some(e) = expected_of(subject, Family::Ownership).into_iter().next() else {
        return vec![];
    };
    let p = per_server(g, &e.name, RecordType::CNAME);
    let seen_everywhere = !p.is_empty()
        && p.values().all(|v| {
            v.as_ref().is_some_and(|v| {
                v.iter().any(|c| {
                    normalise(RecordType::CNAME, c) == normalise(RecordType::CNAME, &e.value)
                })
            })
        });
    if seen_everywhere {
        vec![Finding::ok(
            "ownership",
            "the ownership token is published: the domain is validated",
        )]
    } else {
        vec![
            Finding::new(
                "ownership",
                "ownership.missing",
                CheckStatus::Missing,
                Severity::Warning,
                "the ownership token is not published yet",
            )
            .expected(vec![e.line.clone()])
            .seen(seen_map(&p))
            .fix(vec![e.line.clone()]),
        ]
    }
}
