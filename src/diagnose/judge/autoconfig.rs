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
    out.extend(judge_documents(subject, g));
    or_ok(
        out,
        "autoconfig",
        "autoconfig and autodiscover point to the platform",
    )
}

/// The (host, port) pairs of an XML document: the text of each `host_tag` element with the
/// `port_tag` that follows it. Malformed XML gives what was read before the fault.
fn pairs(xml: &str, host_tag: &str, port_tag: &str) -> Vec<(String, u16)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut current = String::new();
    let mut host: Option<String> = None;
    let mut out = Vec::new();
    while let Ok(event) = reader.read_event() {
        match event {
            Event::Start(e) => current = e.local_name().as_ref().to_string(),
            Event::End(_) => current.clear(),
            Event::Text(t) if current == host_tag => {
                host = Some(
                    t.xml10_content()
                        .trim()
                        .trim_end_matches('.')
                        .to_ascii_lowercase(),
                )
            }
            Event::Text(t) if current == port_tag => {
                if let (Some(h), Ok(p)) = (host.take(), t.xml10_content().trim().parse()) {
                    out.push((h, p));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// The documents fetched over HTTPS (with `diagnosis.check_autoconfig_http`): both must
/// answer, with the platform's servers and ports.
fn judge_documents(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    let platform: Vec<(String, u16)> = subject
        .platform
        .endpoints
        .iter()
        .map(|e| (e.host.trim_end_matches('.').to_ascii_lowercase(), e.port))
        .collect();
    let domain = subject.domain().trim_end_matches('.');
    let mut out = Vec::new();
    for (what, seen, host_tag, port_tag, all) in [
        ("autoconfig", &g.web.autoconfig, "hostname", "port", true),
        ("autodiscover", &g.web.autodiscover, "Server", "Port", false),
    ] {
        let finding = |code: &str, message: String| {
            Finding::new("autoconfig", code, CheckStatus::Error, Severity::Warning, message).fix(vec![
                format!("; https://{what}.{domain}/ must answer with the platform's settings (mailzone's web listener does)"),
            ])
        };
        match seen {
            None => {}
            Some(Err(why)) => out.push(finding(
                "autoconfig.not_answering",
                format!("{what}.{domain} does not answer over HTTPS: {why}"),
            )),
            Some(Ok(xml)) => {
                let served = pairs(xml, host_tag, port_tag);
                // Autoconfig lists every endpoint; autodiscover one per protocol, each of
                // which must be the platform's.
                let wrong = if all {
                    platform.iter().any(|p| !served.contains(p))
                } else {
                    served.is_empty() || served.iter().any(|s| !platform.contains(s))
                };
                if wrong {
                    let list = |v: &[(String, u16)]| {
                        v.iter()
                            .map(|(h, p)| format!("{h}:{p}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    out.push(finding(
                        "autoconfig.settings_differ",
                        format!(
                            "{what}.{domain} gives {} where the platform has {}",
                            list(&served),
                            list(&platform)
                        ),
                    ));
                }
            }
        }
    }
    out
}
