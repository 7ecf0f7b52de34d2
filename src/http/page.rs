//! The status page at `/`: one row per associated domain (hosted or external, both seen as the
//! world sees them, through their delegation), its overall status at a glance, one box per
//! check: delegation (NS), ownership, MX, SRV, autoconfig, SPF, DKIM, DMARC, MTA-STS, TLS-RPT,
//! DNSSEC.
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

/// Renders the page for these associations and their diagnoses.
pub fn render(
    associations: &[Association],
    diagnosis: &dyn Fn(&Association) -> Option<Arc<Diagnosis>>,
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
        out.push_str("<th>checked</th></tr>");
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
    let html = render(&associations, &|a| {
        shared.diagnosis.get(&a.domain, &a.platform)
    });
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}
