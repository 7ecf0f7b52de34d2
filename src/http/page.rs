//! The status page at `/`: one row per associated domain (hosted or external, both seen as the
//! world sees them, through their delegation), its overall status at a glance, one box per
//! check: delegation (NS), ownership, MX, SRV, autoconfig, SPF, DKIM, DMARC, MTA-STS, TLS-RPT,
//! DNSSEC, and the TLS certificate mailzone obtains for the domain's web names (ACME).
//!
//! Server-rendered HTML with inline CSS, no script and no external asset; a red box is a
//! `<details>` element, so clicking it shows what each nameserver served and the lines to add
//! without JavaScript. The page refreshes itself. It shows no private data beyond the public
//! DNS records a domain needs.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::daemon::acme::CertificateStatus;
use crate::daemon::shared::Shared;
use crate::diagnose::check::{CheckStatus, Diagnosis, Overall};
use crate::provision::association::{Association, Mode};

/// The boxes, left to right: label, check name.
const BOXES: [(&str, &str); 11] = [
    ("NS", "delegation"),
    ("CNAME", "ownership"),
    ("MX", "mx"),
    ("SRV", "srv"),
    ("autoconfig", "autoconfig"),
    ("SPF", "spf"),
    ("DKIM", "dkim"),
    ("DMARC", "dmarc"),
    ("MTA-STS", "mta-sts"),
    ("TLS-RPT", "tls-rpt"),
    ("DNSSEC", "dnssec"),
];

/// `2026-11-23 10:00 UTC`.
fn utc(secs: u64) -> String {
    let (y, m, d) = crate::zone::serial::civil_date(secs);
    let day = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        day / 3600,
        day % 3600 / 60
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn managed(a: &Association, check: &str) -> bool {
    match check {
        "delegation" => true,
        "ownership" => !a.hosted,
        "autoconfig" => a.records.autoconfig,
        "mx" => a.records.mx,
        "srv" => a.records.srv,
        "spf" => a.records.spf,
        "dkim" => a.records.dkim,
        "dmarc" => a.records.dmarc,
        "mta-sts" => a.records.mta_sts,
        "tls-rpt" => a.records.tls_rpt,
        "dnssec" => true,
        _ => false,
    }
}

fn cell(out: &mut String, a: &Association, d: Option<&Diagnosis>, label: &str, check: &str) {
    if !managed(a, check) {
        let _ = write!(
            out,
            "<td><span class=\"box grey\" data-check=\"{check}\" title=\"not managed\">{label}</span></td>"
        );
        return;
    }
    let Some(d) = d else {
        let _ = write!(
            out,
            "<td><span class=\"box grey\" data-check=\"{check}\" title=\"not checked yet\">{label}</span></td>"
        );
        return;
    };
    let findings: Vec<_> = d.checks.iter().filter(|f| f.check == check).collect();
    let red: Vec<_> = findings.iter().filter(|f| f.is_red()).collect();
    if red.is_empty() {
        let pending = findings.iter().any(|f| f.status == CheckStatus::Pending);
        let (class, title) = if findings.is_empty() || pending {
            (
                "grey",
                if pending {
                    "pending: a change may still be within its TTL"
                } else {
                    "not checked"
                },
            )
        } else if check == "dnssec"
            && findings
                .iter()
                .any(|f| f.status.is_bad() || f.code == "dnssec.insecure")
        {
            // Insecure (no DS) or undetermined is not "secure": grey, never green.
            ("grey", "insecure")
        } else {
            ("green", "ok")
        };
        let notes: Vec<String> = findings
            .iter()
            .filter(|f| f.status.is_bad() || (check == "dnssec" && f.status == CheckStatus::Ok))
            .map(|f| escape(&f.message))
            .collect();
        let title = if notes.is_empty() {
            title.to_string()
        } else {
            notes.join("; ")
        };
        let _ = write!(
            out,
            "<td><span class=\"box {class}\" data-check=\"{check}\" title=\"{title}\">{label}</span></td>"
        );
        return;
    }
    let _ = write!(
        out,
        "<td><details class=\"box red\" data-check=\"{check}\"><summary>{label}</summary><div class=\"detail\">"
    );
    for f in red {
        let _ = write!(
            out,
            "<p><b>{}</b> <code>{}</code></p>",
            escape(&f.message),
            escape(&f.code)
        );
        if !f.seen.is_empty() {
            out.push_str("<table class=\"seen\"><tr><th>nameserver</th><th>served</th></tr>");
            for (server, values) in &f.seen {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td></tr>",
                    escape(server),
                    values
                        .iter()
                        .map(|v| escape(v))
                        .collect::<Vec<_>>()
                        .join("<br>")
                );
            }
            out.push_str("</table>");
        }
        if !f.fix.is_empty() {
            out.push_str("<p>Add to the zone:</p><pre class=\"fix\">");
            for line in &f.fix {
                let _ = writeln!(out, "{}", escape(line));
            }
            out.push_str("</pre>");
        }
        if !f.remove.is_empty() {
            out.push_str("<p>Remove from the zone:</p><pre class=\"fix remove\">");
            for line in &f.remove {
                let _ = writeln!(out, "{}", escape(line));
            }
            out.push_str("</pre>");
        }
    }
    out.push_str("</div></details></td>");
}

/// What the TLS box shows of a domain's certificate (from [`CertificateStatus`]).
#[derive(Debug, Clone, Default)]
pub struct CertificateView {
    /// The certificate in use expires then (unix seconds), if one was issued.
    pub not_after: Option<u64>,
    /// Orders failed in a row, the last one's reason, and when the next is due.
    pub failures: u32,
    pub last_error: Option<String>,
    pub next_order_at: Option<u64>,
}

impl From<&CertificateStatus> for CertificateView {
    fn from(s: &CertificateStatus) -> Self {
        Self {
            not_after: s.not_after,
            failures: s.failures,
            last_error: s.last_error.clone(),
            next_order_at: s.next_order_at,
        }
    }
}

/// A certificate whose renewal keeps failing is red, not amber, this close to its expiry.
const CERTIFICATE_RED_BEFORE_SECS: u64 = 7 * 86_400;

/// The TLS box: grey when mailzone obtains no certificate for the domain (ACME off, no web
/// name) or the first order is under way; green while the certificate is valid and the
/// last order succeeded; amber when renewals fail but the certificate in use is valid for
/// more than a week; red without a valid certificate after a failed order, or within a
/// week of expiry with failing renewals — with the CA's reason and the next try.
fn certificate_cell(out: &mut String, cert: Option<&CertificateView>, now: u64) {
    const CHECK: &str = "tls";
    let Some(c) = cert else {
        let _ = write!(
            out,
            "<td><span class=\"box grey\" data-check=\"{CHECK}\" title=\"not managed: no certificate is obtained for this domain\">TLS</span></td>"
        );
        return;
    };
    let valid_for = c.not_after.map(|t| t.saturating_sub(now)).unwrap_or(0);
    let next = c
        .next_order_at
        .map_or(String::new(), |t| format!("; next order {}", utc(t)));
    let error = c
        .last_error
        .as_deref()
        .map_or(String::new(), |e| format!(": {e}"));
    if c.failures == 0 {
        let (class, title) = match c.not_after {
            None => ("grey", "pending: the first order is under way".to_string()),
            Some(t) if valid_for == 0 => ("red", format!("expired {}{next}", utc(t))),
            Some(t) => ("green", format!("valid until {}{next}", utc(t))),
        };
        if class != "red" {
            let _ = write!(
                out,
                "<td><span class=\"box {class}\" data-check=\"{CHECK}\" title=\"{}\">TLS</span></td>",
                escape(&title)
            );
            return;
        }
    } else if valid_for > CERTIFICATE_RED_BEFORE_SECS {
        let title = format!(
            "{} orders failed{error}; the certificate in use is valid until {}{next}",
            c.failures,
            c.not_after.map_or(String::new(), utc)
        );
        let _ = write!(
            out,
            "<td><span class=\"box amber\" data-check=\"{CHECK}\" title=\"{}\">TLS</span></td>",
            escape(&title)
        );
        return;
    }
    let state = match c.not_after {
        None => "no certificate".to_string(),
        Some(t) if valid_for == 0 => format!("the certificate expired {}", utc(t)),
        Some(t) => format!("the certificate expires {}", utc(t)),
    };
    let _ = write!(
        out,
        "<td><details class=\"box red\" data-check=\"{CHECK}\"><summary>TLS</summary><div class=\"detail\"><p><b>{}</b></p>",
        escape(&state)
    );
    if c.failures > 0 {
        let _ = write!(
            out,
            "<p>{} orders failed in a row{}{}</p>",
            c.failures,
            escape(&error),
            escape(&next)
        );
    }
    out.push_str("<p>The CA's reason says what to fix (the names must point at this server for HTTP-01, the zone must be served here for DNS-01).</p></div></details></td>");
}

/// Renders the page for these associations, their diagnoses and certificates (`now`: the
/// daemon's clock, that of the certificates' times).
pub fn render(
    associations: &[Association],
    diagnosis: &dyn Fn(&Association) -> Option<Arc<Diagnosis>>,
    certificate: &dyn Fn(&Association) -> Option<CertificateView>,
    now: u64,
) -> String {
    let mut out = String::with_capacity(4096 + associations.len() * 512);
    out.push_str(concat!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"refresh\" content=\"30\"><meta name=\"viewport\" content=\"width=device-width\">",
        "<title>mailzone: associated domains</title><style>",
        "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}",
        "th,td{padding:.3em .6em;text-align:left;vertical-align:top;border-bottom:1px solid #ddd}",
        ".box{display:inline-block;min-width:3.5em;padding:.2em .4em;border-radius:4px;color:#fff;font-weight:600;text-align:center}",
        ".green{background:#2e7d32}.red{background:#c62828}.grey{background:#9e9e9e}.amber{background:#ef6c00}",
        "details.box summary{cursor:pointer;list-style:none}details[open]{text-align:left;color:#222;background:#fff3f3;border:2px solid #c62828}",
        "details[open] summary{color:#c62828}.detail{font-weight:400;max-width:48em}pre.fix{background:#f4f4f4;padding:.5em;white-space:pre-wrap}",
        "table.seen td,table.seen th{font-size:.9em}</style></head><body>",
        "<h1>Associated domains</h1>"
    ));
    if associations.is_empty() {
        out.push_str("<p>No domain is associated yet.</p>");
    } else {
        out.push_str("<table id=\"domains\"><tr><th>status</th><th>domain</th><th>platform</th><th>mode</th><th>zone</th><th>validated</th>");
        for (label, _) in BOXES {
            let _ = write!(out, "<th>{label}</th>");
        }
        out.push_str("<th>TLS</th><th>checked</th></tr>");
        for a in associations {
            let d = diagnosis(a);
            let mode = match a.mode {
                Mode::Authoritative => "authoritative",
                Mode::NonAuthoritative => "non-authoritative",
            };
            // The row's overall status, at a glance.
            let (overall, class) = match d.as_ref().map(|d| d.overall) {
                None => ("unchecked", "grey"),
                Some(Overall::Ok) => ("ok", "green"),
                Some(Overall::Pending) => ("pending", "grey"),
                Some(Overall::Warning) => ("warning", "amber"),
                Some(Overall::Error) => ("error", "red"),
            };
            let _ = write!(
                out,
                "<tr data-domain=\"{0}\" data-overall=\"{overall}\"><td><span class=\"box {class}\">{overall}</span></td><td>{0}</td><td>{1}</td><td>{mode}</td><td>{2}</td><td>{3}</td>",
                escape(&a.domain),
                escape(&a.platform),
                if a.hosted { "hosted" } else { "external" },
                if a.hosted || a.validated { "yes" } else { "no" },
            );
            for (label, check) in BOXES {
                cell(&mut out, a, d.as_deref(), label, check);
            }
            certificate_cell(&mut out, certificate(a).as_ref(), now);
            let checked = d.as_ref().map_or("never".to_string(), |d| {
                format!("{} ({})", utc(d.checked_at), d.overall.as_str())
            });
            let _ = write!(out, "<td>{}</td></tr>", escape(&checked));
        }
        out.push_str("</table>");
    }
    out.push_str("<p><small>Refreshes every 30 s. Click a red box for what each nameserver serves and the lines to add and to remove.</small></p></body></html>");
    out
}

pub async fn status_page(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if let Err(e) = super::require_read_access(&shared, &headers) {
        return e.into_response();
    }
    let associations: Vec<Association> = shared.associations.load().all().cloned().collect();
    let certificates: std::collections::HashMap<String, CertificateView> = shared
        .acme_status()
        .iter()
        .map(|c| {
            (
                c.domain.trim_end_matches('.').to_string(),
                CertificateView::from(c),
            )
        })
        .collect();
    let html = render(
        &associations,
        &|a| shared.diagnosis.get(&a.domain, &a.platform),
        &|a| certificates.get(a.domain.trim_end_matches('.')).cloned(),
        shared.clock_now(),
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn cell_of(c: Option<CertificateView>) -> String {
        let mut out = String::new();
        certificate_cell(&mut out, c.as_ref(), NOW);
        out
    }

    #[test]
    fn a_domain_without_a_certificate_to_obtain_has_a_grey_tls_box() {
        assert!(cell_of(None).contains(r#"class="box grey" data-check="tls" title="not managed"#));
    }

    #[test]
    fn a_valid_certificate_whose_last_order_succeeded_is_green_with_its_expiry() {
        let out = cell_of(Some(CertificateView {
            not_after: Some(NOW + 60 * 86_400),
            ..Default::default()
        }));
        assert!(
            out.contains(r#"class="box green" data-check="tls""#),
            "{out}"
        );
        assert!(out.contains("valid until"), "{out}");
    }

    #[test]
    fn failing_renewals_of_a_certificate_valid_for_weeks_are_amber_with_the_reason() {
        let out = cell_of(Some(CertificateView {
            not_after: Some(NOW + 20 * 86_400),
            failures: 2,
            last_error: Some("dns-01 validation failed <x>".into()),
            next_order_at: Some(NOW + 7200),
        }));
        assert!(
            out.contains(r#"class="box amber" data-check="tls""#),
            "{out}"
        );
        assert!(
            out.contains("2 orders failed: dns-01 validation failed &lt;x&gt;"),
            "{out}"
        );
    }

    #[test]
    fn failing_renewals_within_a_week_of_expiry_are_red() {
        let out = cell_of(Some(CertificateView {
            not_after: Some(NOW + 3 * 86_400),
            failures: 1,
            last_error: Some("cannot connect".into()),
            next_order_at: None,
        }));
        assert!(
            out.contains(r#"<details class="box red" data-check="tls">"#),
            "{out}"
        );
        assert!(out.contains("the certificate expires"), "{out}");
    }

    #[test]
    fn an_expired_certificate_is_red_even_without_a_failed_order() {
        let out = cell_of(Some(CertificateView {
            not_after: Some(NOW - 1),
            ..Default::default()
        }));
        assert!(
            out.contains(r#"<details class="box red" data-check="tls">"#),
            "{out}"
        );
        assert!(out.contains("expired"), "{out}");
    }

    #[test]
    fn no_certificate_after_a_failed_first_order_is_red_with_the_next_try() {
        let out = cell_of(Some(CertificateView {
            failures: 1,
            last_error: Some("cannot connect to 127.0.0.1:9".into()),
            next_order_at: Some(NOW + 3600),
            ..Default::default()
        }));
        assert!(
            out.contains(r#"<details class="box red" data-check="tls">"#),
            "{out}"
        );
        assert!(out.contains("no certificate"), "{out}");
        assert!(out.contains("next order"), "{out}");
    }
}
