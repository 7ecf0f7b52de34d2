//! MTA-STS and TLS-RPT: one `_mta-sts` record with the policy's id, `mta-sts.<domain>`
//! pointing at the web listener, the policy fetched over HTTPS (valid certificate) with
//! `mx:` lines covering every MX; one well-formed `_smtp._tls` record.

use hickory_proto::rr::RecordType;

use super::*;

/// `v=STSv1; id=<1 to 32 letters and digits>` (RFC 8461 §3.1), extensions allowed.
fn sts_record_ok(v: &str) -> bool {
    let mut fields = v.split(';').map(str::trim).filter(|f| !f.is_empty());
    if fields.next() != Some("v=STSv1") {
        return false;
    }
    fields.any(|f| {
        f.strip_prefix("id=").is_some_and(|id| {
            (1..=32).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric())
        })
    })
}

/// `v=TLSRPTv1; rua=<uri>[,<uri>]` with mailto: or https: URIs (RFC 8460 §3).
pub fn tls_rpt_record_ok(v: &str) -> bool {
    let mut fields = v.split(';').map(str::trim).filter(|f| !f.is_empty());
    if fields.next() != Some("v=TLSRPTv1") {
        return false;
    }
    fields.any(|f| {
        f.strip_prefix("rua=").is_some_and(|list| {
            list.split(',').all(|u| {
                let u = u.trim();
                (u.starts_with("mailto:") && u.len() > 7 && u.contains('@'))
                    || (u.starts_with("https://") && u.len() > 8)
            })
        })
    })
}

/// The keys of a policy file: `mx` may repeat; the others are the last value given.
struct Policy {
    version: Option<String>,
    mode: Option<String>,
    mx: Vec<String>,
    max_age: Option<u64>,
}

fn parse_policy(text: &str) -> Policy {
    let mut p = Policy {
        version: None,
        mode: None,
        mx: vec![],
        max_age: None,
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim() {
            "version" => p.version = Some(v),
            "mode" => p.mode = Some(v),
            "mx" => p.mx.push(v.to_ascii_lowercase()),
            "max_age" => p.max_age = v.parse().ok(),
            _ => {}
        }
    }
    p
}

/// Whether an MX host matches a policy `mx:` value (RFC 8461 §4.1: `*.` covers exactly
/// one leftmost label).
fn covers(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(_, rest)| rest == suffix),
        None => host == pattern,
    }
}

pub fn judge_mta_sts(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    let expected = expected_of(subject, Family::MtaSts);
    let mut out = Vec::new();
    let Some(txt) = expected.iter().find(|e| e.rtype == "TXT") else {
        return out;
    };
    let p = per_server(g, &txt.name, RecordType::TXT);
    match consensus("mta-sts", "the _mta-sts record", &p) {
        Err(f) => out.push((*f).fix(vec![txt.line.clone()])),
        Ok(all) => {
            let records: Vec<&String> = all.iter().filter(|v| v.starts_with("v=STSv1")).collect();
            let finding = |code: &str, status, message: String| {
                Finding::new("mta-sts", code, status, Severity::Error, message)
                    .expected(vec![txt.line.clone()])
                    .seen(seen_map(&p))
                    .fix(vec![txt.line.clone()])
            };
            match records.as_slice() {
                [] => out.push(finding(
                    "mta-sts.missing",
                    CheckStatus::Missing,
                    format!("{} has no v=STSv1 record: senders do not look for a policy", txt.name),
                )),
                [one] if !sts_record_ok(one) => out.push(finding(
                    "mta-sts.invalid",
                    CheckStatus::Mismatch,
                    format!("{one:?} is not a valid MTA-STS record (v=STSv1; id=1 to 32 letters or digits)"),
                )),
                [one] if normalise(RecordType::TXT, one) != normalise(RecordType::TXT, &txt.value) => {
                    out.push(finding(
                        "mta-sts.stale_id",
                        CheckStatus::Mismatch,
                        format!("{} publishes {one:?}: its id is not the current policy's, so senders keep an old policy", txt.name),
                    ).remove(vec![crate::provision::records::zone_line(&txt.name, RecordType::TXT, one)]))
                }
                [_] => {}
                many => out.push(finding(
                    "mta-sts.several",
                    CheckStatus::Conflict,
                    format!("{} has {} v=STSv1 records: senders ignore them all (RFC 8461 §3.1)", txt.name, many.len()),
                ).remove(many.iter().map(|v| crate::provision::records::zone_line(&txt.name, RecordType::TXT, v)).collect())),
            }
        }
    }
    // mta-sts.<domain>: the CNAME or the addresses of the web listener.
    let web: Vec<&ExpectedRecord> = expected
        .iter()
        .filter(|e| e.rtype != "TXT")
        .copied()
        .collect();
    for rtype in [RecordType::CNAME, RecordType::A, RecordType::AAAA] {
        let of_type: Vec<&ExpectedRecord> = web
            .iter()
            .filter(|e| e.rtype == rtype.to_string())
            .copied()
            .collect();
        if let Some(first) = of_type.first() {
            out.extend(set_check(
                "mta-sts",
                &format!("{} {rtype}", first.name),
                &of_type,
                g,
                rtype,
            ));
        }
    }
    // The policy itself, as a sender fetches it.
    match &g.web.mta_sts_policy {
        None => {}
        Some(Err(why)) => out.push(
            Finding::new(
                "mta-sts",
                "mta-sts.policy_unreachable",
                CheckStatus::Error,
                Severity::Error,
                format!("the policy cannot be fetched over HTTPS: {why}"),
            )
            .fix(vec![format!(
                "; serve https://mta-sts.{}/.well-known/mta-sts.txt with a certificate valid for mta-sts.{} (mailzone's web listener does)",
                subject.domain().trim_end_matches('.'),
                subject.domain().trim_end_matches('.')
            )]),
        ),
        Some(Ok(text)) => out.extend(judge_policy(subject, g, text)),
    }
    or_ok(
        out,
        "mta-sts",
        "the MTA-STS record and policy are published and agree",
    )
}

fn judge_policy(subject: &Subject<'_>, g: &Gathered, text: &str) -> Vec<Finding> {
    let policy = parse_policy(text);
    let mut out = Vec::new();
    let bad = |code: &str, message: String| {
        Finding::new(
            "mta-sts",
            code,
            CheckStatus::Mismatch,
            Severity::Error,
            message,
        )
        .seen(BTreeMap::from([(
            "policy".to_string(),
            text.lines().map(String::from).collect(),
        )]))
    };
    if policy.version.as_deref() != Some("STSv1") {
        out.push(bad(
            "mta-sts.policy_invalid",
            "the policy has no \"version: STSv1\" line".into(),
        ));
    }
    if !matches!(policy.mode.as_deref(), Some("enforce" | "testing" | "none")) {
        out.push(bad(
            "mta-sts.policy_invalid",
            "the policy's mode is not enforce, testing or none".into(),
        ));
    }
    match policy.max_age {
        Some(a) if a <= u64::from(crate::provision::mta_sts::MAX_AGE_LIMIT) => {}
        _ => out.push(bad(
            "mta-sts.policy_invalid",
            "the policy's max_age is missing or over 31557600".into(),
        )),
    }
    if policy.mode.as_deref() != Some("none") {
        // Every MX the domain serves (else the platform's) must be covered, or a sender in
        // enforce mode refuses to deliver to it.
        let domain = subject.domain().to_string();
        let served: Vec<String> =
            consensus("mta-sts", "MX", &per_server(g, &domain, RecordType::MX))
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.split_whitespace().nth(1).map(String::from))
                .collect();
        let hosts: Vec<String> = if served.is_empty() {
            subject.platform.mx.iter().map(|m| m.host.clone()).collect()
        } else {
            served
        };
        let uncovered: Vec<&String> = hosts
            .iter()
            .filter(|h| !policy.mx.iter().any(|p| covers(p, h)))
            .collect();
        if !uncovered.is_empty() {
            out.push(bad(
                "mta-sts.mx_uncovered",
                format!(
                    "the policy's mx: lines do not cover {}: senders enforcing it refuse to deliver there",
                    uncovered.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    out
}

pub fn judge_tls_rpt(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    let expected = expected_of(subject, Family::TlsRpt);
    let Some(e) = expected.first() else {
        return vec![];
    };
    let p = per_server(g, &e.name, RecordType::TXT);
    let all = match consensus("tls-rpt", "the _smtp._tls record", &p) {
        Ok(a) => a,
        Err(f) => return vec![(*f).fix(vec![e.line.clone()])],
    };
    let records: Vec<&String> = all.iter().filter(|v| v.starts_with("v=TLSRPTv1")).collect();
    let finding = |code: &str, status, message: String| {
        Finding::new("tls-rpt", code, status, Severity::Warning, message)
            .expected(vec![e.line.clone()])
            .seen(seen_map(&p))
            .fix(vec![e.line.clone()])
    };
    let out = match records.as_slice() {
        [] => vec![finding(
            "tls-rpt.missing",
            CheckStatus::Missing,
            format!(
                "{} has no v=TLSRPTv1 record: TLS failures are not reported",
                e.name
            ),
        )],
        [one] if !tls_rpt_record_ok(one) => vec![finding(
            "tls-rpt.invalid",
            CheckStatus::Mismatch,
            format!(
                "{one:?} is not a valid TLS-RPT record (v=TLSRPTv1; rua=mailto:... or https://...)"
            ),
        )],
        [one] if normalise(RecordType::TXT, one) != normalise(RecordType::TXT, &e.value) => {
            vec![finding(
                "tls-rpt.mismatch",
                CheckStatus::Mismatch,
                format!(
                    "{} sends reports elsewhere than the platform asks: {one:?}",
                    e.name
                ),
            )]
        }
        [_] => vec![],
        many => vec![finding(
            "tls-rpt.several",
            CheckStatus::Conflict,
            format!(
                "{} has {} v=TLSRPTv1 records: senders use none (RFC 8460 §3)",
                e.name,
                many.len()
            ),
        )],
    };
    or_ok(out, "tls-rpt", "TLS reports go to the platform")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_records_need_the_version_first_and_a_short_alphanumeric_id() {
        assert!(sts_record_ok("v=STSv1; id=20260101abc"));
        assert!(!sts_record_ok("id=1; v=STSv1"));
        assert!(!sts_record_ok("v=STSv1; id=has-dash"));
        assert!(!sts_record_ok(
            "v=STSv1; id=123456789012345678901234567890123"
        ));
        assert!(!sts_record_ok("v=STSv1"));
    }

    #[test]
    fn tls_rpt_records_need_mailto_or_https_addresses() {
        assert!(tls_rpt_record_ok("v=TLSRPTv1; rua=mailto:tls@mail.test"));
        assert!(tls_rpt_record_ok(
            "v=TLSRPTv1;rua=mailto:a@b.test,https://r.test/x"
        ));
        assert!(!tls_rpt_record_ok("v=TLSRPTv1; rua=tls@mail.test"));
        assert!(!tls_rpt_record_ok("rua=mailto:a@b.test; v=TLSRPTv1"));
        assert!(!tls_rpt_record_ok("v=TLSRPTv1"));
    }

    #[test]
    fn wildcard_mx_patterns_cover_one_label_only() {
        assert!(covers("*.mail.test", "mx1.mail.test."));
        assert!(!covers("*.mail.test", "a.mx1.mail.test."));
        assert!(!covers("*.mail.test", "mail.test."));
        assert!(covers("mx1.mail.test", "MX1.mail.test."));
    }
}
