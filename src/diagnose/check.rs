//! Findings: what one check concluded about one domain, in the shape the API, the status
//! page, the metrics and the CLI all show.
//!
//! This module owns the vocabulary (statuses, severities, stable codes) and how findings add
//! up to a domain's overall status. It does no I/O and judges no record: [`super::checks`]
//! does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    /// A change may still be within its TTL, or a failure awaits confirmation.
    Pending,
    Missing,
    Mismatch,
    Conflict,
    Error,
}

impl CheckStatus {
    pub fn is_bad(self) -> bool {
        !matches!(self, CheckStatus::Ok | CheckStatus::Pending)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Notice,
    Warning,
    Error,
}

/// One finding of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The check: delegation, mx, srv, autoconfig, spf, dkim, dmarc, ownership.
    pub check: String,
    /// Stable code, e.g. `mx.missing`, `spf.too_many_lookups`, `delegation.lame`.
    pub code: String,
    pub status: CheckStatus,
    pub severity: Severity,
    /// One sentence for a human.
    pub message: String,
    /// What the platform needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected: Vec<String>,
    /// What each nameserver returned (`ns1.example.net. (192.0.2.1)` → records or error).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seen: BTreeMap<String, Vec<String>>,
    /// Zone-file lines to add that fix it (or, where no line fits, one `;` sentence).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fix: Vec<String>,
    /// Zone-file lines to remove (the records the lines of `fix` replace, foreign hosts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// When this finding last changed status (seconds since the epoch).
    #[serde(default)]
    pub since: u64,
}

impl Finding {
    pub fn ok(check: &str, message: impl Into<String>) -> Self {
        Self::new(
            check,
            &format!("{check}.ok"),
            CheckStatus::Ok,
            Severity::Info,
            message,
        )
    }

    pub fn new(
        check: &str,
        code: &str,
        status: CheckStatus,
        severity: Severity,
        message: impl Into<String>,
    ) -> Self {
        Self {
            check: check.to_string(),
            code: code.to_string(),
            status,
            severity,
            message: message.into(),
            expected: vec![],
            seen: BTreeMap::new(),
            fix: vec![],
            remove: vec![],
            since: 0,
        }
    }

    pub fn expected(mut self, lines: Vec<String>) -> Self {
        self.expected = lines;
        self
    }

    pub fn seen(mut self, seen: BTreeMap<String, Vec<String>>) -> Self {
        self.seen = seen;
        self
    }

    pub fn fix(mut self, lines: Vec<String>) -> Self {
        self.fix = lines;
        self
    }

    pub fn remove(mut self, lines: Vec<String>) -> Self {
        self.remove = lines;
        self
    }

    /// Red on the status page: a bad status that is not a mere notice.
    pub fn is_red(&self) -> bool {
        self.status.is_bad() && self.severity >= Severity::Warning
    }
}

/// A domain's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Overall {
    Ok,
    Pending,
    Warning,
    Error,
}

impl Overall {
    pub fn as_str(self) -> &'static str {
        match self {
            Overall::Ok => "ok",
            Overall::Pending => "pending",
            Overall::Warning => "warning",
            Overall::Error => "error",
        }
    }
}

/// The result of diagnosing one association.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub domain: String,
    pub platform: String,
    pub checked_at: u64,
    pub overall: Overall,
    pub checks: Vec<Finding>,
    /// DNS queries this run sent.
    pub queries: u32,
}

impl Diagnosis {
    pub fn overall_of(findings: &[Finding]) -> Overall {
        if findings
            .iter()
            .any(|f| f.status.is_bad() && f.severity == Severity::Error)
        {
            Overall::Error
        } else if findings
            .iter()
            .any(|f| f.status.is_bad() && f.severity == Severity::Warning)
        {
            Overall::Warning
        } else if findings.iter().any(|f| f.status == CheckStatus::Pending) {
            Overall::Pending
        } else {
            Overall::Ok
        }
    }

    /// The worst finding of a check (for the status page boxes).
    pub fn worst(&self, check: &str) -> Option<&Finding> {
        self.checks
            .iter()
            .filter(|f| f.check == check)
            .max_by_key(|f| (f.is_red(), f.status.is_bad(), f.severity, f.status))
    }
}
