//! SRV: every expected service record with the right target, port and priority.

use hickory_proto::rr::RecordType;

use super::*;

pub fn judge(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    let expected = expected_of(subject, Family::Srv);
    let mut names: Vec<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let at: Vec<&ExpectedRecord> = expected
            .iter()
            .copied()
            .filter(|e| e.name == name)
            .collect();
        out.extend(set_check(
            "srv",
            &format!("SRV {name}"),
            &at,
            g,
            RecordType::SRV,
        ));
    }
    or_ok(
        out,
        "srv",
        "every SRV record is served with the right target, port and priority",
    )
}
