//! DMARC: exactly one valid record; notices for `p=none` and removed tags; consent of
//! outside report destinations.

use hickory_proto::rr::RecordType;

use super::*;

pub fn judge(subject: &Subject<'_>, g: &Gathered, rua: &[(String, bool)]) -> Vec<Finding> {
    let name = format!("_dmarc.{}", subject.domain());
    let expected = expected_of(subject, Family::Dmarc);
    let lines: Vec<String> = expected.iter().map(|e| e.line.clone()).collect();
    let p = per_server(g, &name, RecordType::TXT);
    let all = match consensus("dmarc", "the DMARC record", &p) {
        Ok(a) => a,
        Err(f) => return vec![*f],
    };
    let records: Vec<&String> = all.iter().filter(|t| t.starts_with("v=DMARC1")).collect();
    let seen = seen_map(&p);
    let mut out = Vec::new();
    match records.len() {
        0 => out.push(
            Finding::new(
                "dmarc",
                "dmarc.missing",
                CheckStatus::Missing,
                Severity::Warning,
                "there is no DMARC record",
            )
            .expected(lines.clone())
            .seen(seen.clone())
            .fix(lines.clone()),
        ),
        1 => {
            let tags: BTreeMap<String, String> = records[0]
                .split(';')
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            match tags.get("p").map(String::as_str) {
                Some("none") => out.push(
                    Finding::new(
                        "dmarc",
                        "dmarc.policy_none",
                        CheckStatus::Mismatch,
                        Severity::Notice,
                        "the DMARC policy is p=none: receivers only report, they do not act",
                    )
                    .seen(seen.clone()),
                ),
                Some("quarantine" | "reject") => {}
                _ => out.push(
                    Finding::new(
                        "dmarc",
                        "dmarc.invalid",
                        CheckStatus::Mismatch,
                        Severity::Error,
                        "the DMARC record has no valid p= tag",
                    )
                    .seen(seen.clone())
                    .fix(lines.clone())
                    .remove(removal(&name, &records)),
                ),
            }
            let removed: Vec<&str> = ["pct", "rf", "ri"]
                .into_iter()
                .filter(|t| tags.contains_key(*t))
                .collect();
            if !removed.is_empty() {
                out.push(
                    Finding::new(
                        "dmarc",
                        "dmarc.removed_tags",
                        CheckStatus::Mismatch,
                        Severity::Notice,
                        format!(
                            "tags removed by the current DMARC specification: {}",
                            removed.join(", ")
                        ),
                    )
                    .seen(seen.clone()),
                );
            }
        }
        n => out.push(
            Finding::new(
                "dmarc",
                "dmarc.several",
                CheckStatus::Conflict,
                Severity::Error,
                format!("{n} DMARC records: receivers ignore them all"),
            )
            .seen(seen.clone())
            .fix(lines.clone())
            .remove(removal(&name, &records)),
        ),
    }
    for (dest, authorised) in rua {
        if !authorised {
            let line = format!(
                "{}_report._dmarc.{dest}. IN TXT \"v=DMARC1\"",
                subject.domain()
            );
            out.push(
                Finding::new("dmarc", "dmarc.rua_unauthorised", CheckStatus::Mismatch, Severity::Warning, format!("aggregate reports go to {dest}, which has not agreed to receive them: they will be dropped"))
                    .seen(seen.clone())
                    .fix(vec![format!("; in the zone of {dest}:"), line]),
            );
        }
    }
    or_ok(out, "dmarc", "one valid DMARC record")
}

/// The served DMARC records, as lines to remove.
fn removal(name: &str, records: &[&String]) -> Vec<String> {
    records
        .iter()
        .map(|r| crate::provision::records::zone_line(name, RecordType::TXT, r))
        .collect()
}
