//! DKIM: every selector we issued and expect published, on every answering nameserver, with
//! our key (keys compared, not strings), and a probe signed with our key verifying with the
//! key as served.

use hickory_proto::rr::RecordType;

use super::*;

pub fn judge(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    let expected = expected_of(subject, Family::Dkim);
    let mut out = Vec::new();
    for e in &expected {
        let selector = e
            .name
            .split("._domainkey.")
            .next()
            .unwrap_or_default()
            .to_string();
        let p = per_server(g, &e.name, RecordType::TXT);
        let cname_p = g.answers.get(&(e.name.clone(), RecordType::TXT));
        // A CNAME into our delegation zone: the TXT is ours, served from there.
        let via_cname: Vec<String> = cname_p
            .map(|m| {
                m.values()
                    .filter_map(|s| match s {
                        Served::Answer { records, .. } => records
                            .iter()
                            .find(|(t, _)| *t == RecordType::CNAME)
                            .map(|(_, v)| v.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let served: Vec<String> = if e.rtype == "CNAME" {
            if via_cname.len() < g.servers.len()
                || via_cname.iter().any(|c| {
                    normalise(RecordType::CNAME, c) != normalise(RecordType::CNAME, &e.value)
                })
            {
                out.push(
                    Finding::new(
                        "dkim",
                        "dkim.missing",
                        CheckStatus::Missing,
                        Severity::Error,
                        format!(
                            "{} must be a CNAME to {} on every nameserver",
                            e.name, e.value
                        ),
                    )
                    .expected(vec![e.line.clone()])
                    .seen(seen_map(&p))
                    .fix(vec![e.line.clone()]),
                );
                continue;
            }
            subject
                .delegated_txt
                .get(&e.value.to_ascii_lowercase())
                .cloned()
                .unwrap_or_default()
        } else {
            let answered: Vec<&Option<Vec<String>>> = p.values().collect();
            let with_key = answered
                .iter()
                .filter(|v| v.as_ref().is_some_and(|v| !v.is_empty()))
                .count();
            if with_key == 0 {
                out.push(
                    Finding::new(
                        "dkim",
                        "dkim.missing",
                        CheckStatus::Missing,
                        Severity::Error,
                        format!("the DKIM key of selector {selector} is not published"),
                    )
                    .expected(vec![e.line.clone()])
                    .seen(seen_map(&p))
                    .fix(vec![e.line.clone()]),
                );
                continue;
            }
            if with_key < g.servers.len() {
                out.push(Finding::new("dkim", "dkim.inconsistent", CheckStatus::Mismatch, Severity::Error, format!("the DKIM key of selector {selector} is on {with_key} of {} nameservers", g.servers.len())).expected(vec![e.line.clone()]).seen(seen_map(&p)).fix(vec![e.line.clone()]));
                continue;
            }
            match consensus("dkim", &format!("the DKIM key of selector {selector}"), &p) {
                Ok(s) => s,
                Err(f) => {
                    out.push((*f).fix(vec![e.line.clone()]));
                    continue;
                }
            }
        };
        let ours = subject
            .association
            .dkim
            .iter()
            .flat_map(|g| g.keys.iter())
            .find(|k| k.selector == selector);
        let Some(ours) = ours else { continue };
        let matches = served
            .iter()
            .any(|v| crate::dkim::same_key(v, &ours.public));
        if !matches {
            out.push(Finding::new("dkim", "dkim.key_mismatch", CheckStatus::Mismatch, Severity::Error, format!("the key published for selector {selector} is not ours: mail signed with our key would fail")).expected(vec![e.line.clone()]).seen(seen_map(&p)).fix(vec![e.line.clone()]).remove(removal(&e.name, &served)));
            continue;
        }
        // End to end: sign a probe with our private key, verify it with the key as served.
        if let Some(key) = subject.keys.get(&selector) {
            let probe = format!(
                "From: probe@{0}\r\nTo: probe@{0}\r\nSubject: mailzone DKIM probe\r\n\r\nprobe\r\n",
                subject.domain().trim_end_matches('.')
            );
            let verified = MailMessage::parse(probe.as_bytes()).ok().and_then(|m| {
                let header = sign(
                    &m,
                    subject.domain(),
                    &selector,
                    key,
                    crate::zone::set::unix_now(),
                )
                .ok()?;
                let mut signed = header.into_bytes();
                signed.extend_from_slice(&m.to_bytes());
                let parsed = MailMessage::parse(&signed).ok()?;
                let verdicts = verify(&parsed, |_| Ok(served.clone()));
                Some(verdicts.first().is_some_and(|v| v.result.is_ok()))
            });
            if verified != Some(true) {
                out.push(Finding::new("dkim", "dkim.probe_failed", CheckStatus::Mismatch, Severity::Error, format!("a message signed with selector {selector} does not verify with the key as served")).seen(seen_map(&p)).fix(vec![e.line.clone()]).remove(removal(&e.name, &served)));
            }
        }
    }
    or_ok(
        out,
        "dkim",
        "every DKIM key is published on every nameserver and verifies",
    )
}

/// The records served at a selector, as lines to remove (a CNAME's target is not ours to
/// edit: only TXT records are listed).
fn removal(name: &str, served: &[String]) -> Vec<String> {
    served
        .iter()
        .map(|v| crate::provision::records::zone_line(name, RecordType::TXT, v))
        .collect()
}
