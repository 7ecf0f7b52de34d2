//! SPF: exactly one record, authorising the platform, within the lookup limits, no `+all`.
//! The fix of an existing record is the one merged record that replaces it.

use hickory_proto::rr::RecordType;

use super::*;

pub fn judge(
    subject: &Subject<'_>,
    g: &Gathered,
    report: Option<&crate::diagnose::spf::SpfReport>,
) -> Vec<Finding> {
    let expected = expected_of(subject, Family::Spf);
    let lines: Vec<String> = expected.iter().map(|e| e.line.clone()).collect();
    let p = per_server(g, subject.domain(), RecordType::TXT);
    let records = match served_spf(subject.domain(), g) {
        Ok(r) => r,
        Err(f) => return vec![(*f).fix(lines)],
    };
    let seen = seen_map(&p);
    let mut out = Vec::new();
    match records.len() {
        0 => out.push(Finding::new("spf", "spf.missing", CheckStatus::Missing, Severity::Error, "there is no SPF record").expected(lines.clone()).seen(seen.clone()).fix(lines.clone())),
        1 => {}
        n => out.push(
            Finding::new("spf", "spf.several", CheckStatus::Conflict, Severity::Error, format!("{n} SPF records: receivers treat that as a permanent error; merge them into one"))
                .seen(seen.clone())
                .fix(merged_spf_line(subject, &records))
                .remove(removal(subject, &records)),
        ),
    }
    if records.len() == 1 {
        if report.is_some_and(|r| r.unfinished) {
            out.push(
                Finding::new(
                    "spf",
                    "spf.unevaluated",
                    CheckStatus::Error,
                    Severity::Error,
                    "the SPF record could not be evaluated within the diagnosis budget: its includes did not resolve in time",
                )
                .seen(seen.clone())
                .fix(vec!["; make every include and redirect of the SPF record resolve quickly, or remove the ones that do not".into()]),
            );
        } else if let Some(r) = report {
            if !r.authorises {
                out.push(
                    Finding::new(
                        "spf",
                        "spf.not_authorised",
                        CheckStatus::Mismatch,
                        Severity::Error,
                        format!(
                            "the SPF record does not authorise the platform ({})",
                            subject.platform.spf.join(" ")
                        ),
                    )
                    .expected(lines.clone())
                    .seen(seen.clone())
                    .fix(merged_spf_line(subject, &records))
                    .remove(removal(subject, &records)),
                );
            }
            if r.lookups > 10 {
                out.push(Finding::new("spf", "spf.too_many_lookups", CheckStatus::Error, Severity::Error, format!("the SPF record needs {} DNS lookups; at most 10 are allowed (RFC 7208 §4.6.4)", r.lookups)).seen(seen.clone()).fix(vec![format!("; remove or replace by ip4:/ip6: ranges at least {} of the include, a, mx, ptr, exists and redirect terms (each costs a lookup, nested ones too); keep {}", r.lookups - 10, subject.platform.spf.join(" "))]));
            }
            if r.void_lookups > 2 {
                out.push(
                    Finding::new(
                        "spf",
                        "spf.too_many_void_lookups",
                        CheckStatus::Error,
                        Severity::Error,
                        format!(
                            "{} SPF lookups find nothing; at most 2 are allowed",
                            r.void_lookups
                        ),
                    )
                    .seen(seen.clone())
                    .fix(vec!["; remove the SPF terms whose names do not exist or have no address (see what each nameserver served)".into()]),
                );
            }
        }
        if let Some(spf) = SpfRecord::parse(&records[0]) {
            let text = spf.to_string();
            if text.split_whitespace().any(|t| t == "+all" || t == "all") {
                out.push(
                    Finding::new(
                        "spf",
                        "spf.pass_all",
                        CheckStatus::Error,
                        Severity::Error,
                        "the SPF record ends in +all: it authorises every server on the internet",
                    )
                    .seen(seen.clone())
                    .fix(spf_line(subject, &with_all(&text, "~all")))
                    .remove(removal(subject, &records)),
                );
            } else if !text
                .split_whitespace()
                .any(|t| t.ends_with("all") || t.starts_with("redirect="))
            {
                out.push(
                    Finding::new(
                        "spf",
                        "spf.no_all",
                        CheckStatus::Mismatch,
                        Severity::Warning,
                        "the SPF record has no all term: end it with ~all or -all",
                    )
                    .seen(seen.clone())
                    .fix(spf_line(subject, &with_all(&text, "~all")))
                    .remove(removal(subject, &records)),
                );
            }
        }
    }
    or_ok(
        out,
        "spf",
        "one SPF record, authorising the platform, within the lookup limits",
    )
}

/// The one record that replaces every served one: the first, with the terms of the others
/// and the platform's merged in (never a second `v=spf1`).
fn merged_spf_line(subject: &Subject<'_>, records: &[String]) -> Vec<String> {
    let merged = SpfRecord::merged(records, &subject.platform.spf);
    spf_line(subject, &merged.to_string())
}

/// `text` with its `all` term (if any) replaced by `all`, or `all` appended.
fn with_all(text: &str, all: &str) -> String {
    let mut terms: Vec<&str> = text
        .split_whitespace()
        .filter(|t| {
            !t.trim_start_matches(['+', '-', '~', '?'])
                .eq_ignore_ascii_case("all")
        })
        .collect();
    terms.push(all);
    terms.join(" ")
}

fn spf_line(subject: &Subject<'_>, text: &str) -> Vec<String> {
    let name = hickory_proto::rr::Name::from_ascii(subject.domain())
        .unwrap_or_else(|_| hickory_proto::rr::Name::root());
    vec![
        crate::provision::records::ExpectedRecord::new(
            Family::Spf,
            &name,
            RecordType::TXT,
            subject.platform.ttl,
            text.to_string(),
        )
        .line,
    ]
}

/// The served SPF records, as lines to remove.
fn removal(subject: &Subject<'_>, records: &[String]) -> Vec<String> {
    records
        .iter()
        .map(|r| crate::provision::records::zone_line(subject.domain(), RecordType::TXT, r))
        .collect()
}
