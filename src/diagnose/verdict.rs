//! The verdict: from one or two runs' findings to what is reported.
//!
//! This module owns the three rules that turn findings into a reported status: `pending`
//! only for records of a hosted zone that *we* changed less than the pending window ago (a
//! secondary may still be catching up; an external domain is asked directly, so what it
//! does not serve is missing at once); no flapping (a failure not reported last time is
//! re-checked before it is); and `since` (carried over while a finding keeps its status).
//! It does no I/O of its own and stores nothing: the caller runs the checks and keeps the
//! result.

use std::collections::BTreeMap;
use std::future::Future;

use super::check::{CheckStatus, Diagnosis};

/// What the verdict needs to know about recent changes of an association's records.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    /// Whether the records are served by us (only then can a change still be propagating).
    pub hosted: bool,
    /// When the records of each family last changed (seconds since the epoch).
    pub changed_at: BTreeMap<String, u64>,
    /// How long a change may take to reach every nameserver (SOA refresh, at most the TTL).
    pub window: u64,
}

impl Recent {
    /// Whether the records `check` is about changed less than the window ago.
    fn changing(&self, check: &str, now: u64) -> bool {
        self.hosted
            && self
                .changed_at
                .get(check)
                .is_some_and(|at| now.saturating_sub(*at) < self.window)
    }
}

/// Marks pending the bad findings whose records are still propagating; recomputes overall.
pub fn mark_pending(d: &mut Diagnosis, recent: &Recent) {
    let now = d.checked_at;
    for f in d.checks.iter_mut() {
        if f.status.is_bad() && f.check != "delegation" && recent.changing(&f.check, now) {
            f.status = CheckStatus::Pending;
            f.message = format!(
                "{} (these records changed less than {} s ago; a secondary may still be catching up)",
                f.message, recent.window
            );
        }
    }
    d.overall = Diagnosis::overall_of(&d.checks);
}

/// Codes reported red now that were not red in `previous`.
fn newly_red(previous: Option<&Diagnosis>, now: &Diagnosis) -> bool {
    now.checks
        .iter()
        .filter(|f| f.is_red())
        .any(|f| !previous.is_some_and(|p| p.checks.iter().any(|o| o.is_red() && o.code == f.code)))
}

/// Sets each finding's `since`: kept from `previous` while code and status stay the same.
fn carry_since(previous: Option<&Diagnosis>, d: &mut Diagnosis) {
    let now = d.checked_at;
    for f in d.checks.iter_mut() {
        let before = previous.and_then(|p| {
            p.checks
                .iter()
                .find(|o| o.code == f.code && o.status == f.status)
        });
        f.since = before.map_or(now, |o| o.since);
    }
}

/// The verdict of one diagnosis: runs the checks (`run`), re-runs them once when a failure
/// appears that `previous` did not report (no flapping: only a confirmed failure is
/// reported), applies the pending rule and sets `since`.
pub async fn decide<F, Fut>(previous: Option<&Diagnosis>, recent: &Recent, mut run: F) -> Diagnosis
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Diagnosis>,
{
    let mut result = run().await;
    mark_pending(&mut result, recent);
    if newly_red(previous, &result) {
        result = run().await;
        mark_pending(&mut result, recent);
    }
    carry_since(previous, &mut result);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::check::{Finding, Overall, Severity};

    fn diagnosis(at: u64, findings: Vec<Finding>) -> Diagnosis {
        Diagnosis {
            domain: "far.example.".into(),
            platform: "p".into(),
            checked_at: at,
            overall: Diagnosis::overall_of(&findings),
            checks: findings,
            queries: 0,
        }
    }

    fn mx_missing() -> Finding {
        Finding::new(
            "mx",
            "mx.missing",
            CheckStatus::Missing,
            Severity::Error,
            "no MX",
        )
    }

    fn recent(hosted: bool, mx_at: u64) -> Recent {
        Recent {
            hosted,
            changed_at: [("mx".to_string(), mx_at)].into(),
            window: 600,
        }
    }

    #[test]
    fn a_hosted_family_changed_within_the_window_is_pending() {
        let mut d = diagnosis(1000, vec![mx_missing()]);
        mark_pending(&mut d, &recent(true, 900));
        assert_eq!(d.checks[0].status, CheckStatus::Pending);
        assert_eq!(d.overall, Overall::Pending);
    }

    #[test]
    fn another_family_changing_does_not_make_a_check_pending() {
        let mut d = diagnosis(1000, vec![mx_missing()]);
        let mut r = recent(true, 0);
        r.changed_at.insert("dkim".into(), 999);
        mark_pending(&mut d, &r);
        assert_eq!(d.checks[0].status, CheckStatus::Missing);
    }

    #[test]
    fn an_external_domain_is_never_pending() {
        let mut d = diagnosis(1000, vec![mx_missing()]);
        mark_pending(&mut d, &recent(false, 999));
        assert_eq!(d.checks[0].status, CheckStatus::Missing);
        assert_eq!(d.overall, Overall::Error);
    }

    #[test]
    fn a_change_older_than_the_window_is_judged() {
        let mut d = diagnosis(1000, vec![mx_missing()]);
        mark_pending(&mut d, &recent(true, 400));
        assert_eq!(d.checks[0].status, CheckStatus::Missing);
    }

    #[tokio::test]
    async fn a_new_failure_is_checked_twice_and_a_known_one_once() {
        let runs = std::cell::Cell::new(0);
        let run = || {
            runs.set(runs.get() + 1);
            std::future::ready(diagnosis(1000, vec![mx_missing()]))
        };
        let first = decide(None, &Recent::default(), run).await;
        assert_eq!(runs.get(), 2, "a new failure is confirmed");
        assert_eq!(first.checks[0].since, 1000);
        runs.set(0);
        let run = || {
            runs.set(runs.get() + 1);
            std::future::ready(diagnosis(2000, vec![mx_missing()]))
        };
        let second = decide(Some(&first), &Recent::default(), run).await;
        assert_eq!(
            runs.get(),
            1,
            "a failure already reported is not re-checked"
        );
        assert_eq!(second.checks[0].since, 1000, "since is kept");
    }

    #[tokio::test]
    async fn a_failure_gone_at_the_second_run_is_not_reported() {
        let runs = std::cell::Cell::new(0);
        let run = || {
            runs.set(runs.get() + 1);
            let findings = if runs.get() == 1 {
                vec![mx_missing()]
            } else {
                vec![Finding::ok("mx", "fine")]
            };
            std::future::ready(diagnosis(1000, findings))
        };
        let d = decide(None, &Recent::default(), run).await;
        assert_eq!(d.overall, Overall::Ok);
    }
}
