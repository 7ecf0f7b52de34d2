//! SPF records (RFC 7208) as mailzone edits them: one record per domain, extended with a
//! platform's mechanisms and shrunk again when the platform leaves, never replaced.
//!
//! This module owns parsing a `v=spf1` TXT value into terms, inserting mechanisms before the
//! `all` term and the modifiers, and removing exactly the ones a platform brought. It keeps
//! every other term of the user as written.

use std::fmt;

/// A parsed SPF record: the terms after `v=spf1`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfRecord {
    terms: Vec<String>,
}

/// The `all` qualifier of a record mailzone creates: soft-fail, as the big platforms do.
const CREATED_ALL: &str = "~all";

impl SpfRecord {
    /// Parses a TXT value; `None` when it is not an SPF record.
    pub fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_ascii_whitespace();
        let version = words.next()?;
        if !version.eq_ignore_ascii_case("v=spf1") {
            return None;
        }
        Some(Self {
            terms: words.map(str::to_string).collect(),
        })
    }

    /// A new record authorising `mechanisms`, ending in `~all`.
    pub fn new(mechanisms: &[String]) -> Self {
        let mut record = Self {
            terms: vec![CREATED_ALL.to_string()],
        };
        record.merge(mechanisms);
        record
    }

    /// Whether this term ends evaluation or is a modifier: new mechanisms go before it.
    fn is_tail(term: &str) -> bool {
        let bare = term.trim_start_matches(['+', '-', '~', '?']);
        bare.eq_ignore_ascii_case("all") || term.contains('=')
    }

    /// Adds the mechanisms not already present, before `all` and the modifiers.
    /// Returns whether the record changed.
    pub fn merge(&mut self, mechanisms: &[String]) -> bool {
        let mut changed = false;
        for m in mechanisms {
            if self.terms.iter().any(|t| t.eq_ignore_ascii_case(m)) {
                continue;
            }
            let at = self
                .terms
                .iter()
                .position(|t| Self::is_tail(t))
                .unwrap_or(self.terms.len());
            self.terms.insert(at, m.clone());
            changed = true;
        }
        changed
    }

    /// The one record that replaces all of `records` (a domain serving several has a broken
    /// SPF): the first, with the other records' mechanisms and then `mechanisms` merged in.
    pub fn merged(records: &[String], mechanisms: &[String]) -> Self {
        let mut merged = records
            .first()
            .and_then(|r| Self::parse(r))
            .unwrap_or_else(|| Self::new(&[]));
        for other in records.iter().skip(1) {
            if let Some(o) = Self::parse(other) {
                let terms: Vec<String> =
                    o.terms.into_iter().filter(|t| !Self::is_tail(t)).collect();
                merged.merge(&terms);
            }
        }
        merged.merge(mechanisms);
        merged
    }

    /// Removes these mechanisms; returns whether the record changed.
    pub fn remove(&mut self, mechanisms: &[String]) -> bool {
        let before = self.terms.len();
        self.terms
            .retain(|t| !mechanisms.iter().any(|m| t.eq_ignore_ascii_case(m)));
        before != self.terms.len()
    }

    /// True when nothing but `all` and modifiers is left.
    pub fn authorises_nothing(&self) -> bool {
        self.terms.iter().all(|t| Self::is_tail(t))
    }
}

impl fmt::Display for SpfRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v=spf1")?;
        for t in &self.terms {
            write!(f, " {t}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mechs(m: &[&str]) -> Vec<String> {
        m.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_new_record_soft_fails() {
        assert_eq!(
            SpfRecord::new(&mechs(&["include:a.example"])).to_string(),
            "v=spf1 include:a.example ~all"
        );
    }

    #[test]
    fn merge_keeps_the_users_terms_and_all_qualifier() {
        let mut r = SpfRecord::parse("v=spf1 mx ip4:192.0.2.1 -all").unwrap();
        assert!(r.merge(&mechs(&["include:a.example"])));
        assert_eq!(
            r.to_string(),
            "v=spf1 mx ip4:192.0.2.1 include:a.example -all"
        );
        assert!(
            !r.merge(&mechs(&["include:a.example"])),
            "merging twice changes nothing"
        );
    }

    #[test]
    fn merge_goes_before_modifiers() {
        let mut r = SpfRecord::parse("v=spf1 a redirect=_spf.example").unwrap();
        r.merge(&mechs(&["include:b.example"]));
        assert_eq!(
            r.to_string(),
            "v=spf1 a include:b.example redirect=_spf.example"
        );
    }

    #[test]
    fn two_platforms_merge_then_one_leaves() {
        let mut r = SpfRecord::new(&mechs(&["include:a.example"]));
        r.merge(&mechs(&["include:b.example"]));
        assert_eq!(
            r.to_string(),
            "v=spf1 include:a.example include:b.example ~all"
        );
        r.remove(&mechs(&["include:a.example"]));
        assert_eq!(r.to_string(), "v=spf1 include:b.example ~all");
        r.remove(&mechs(&["include:b.example"]));
        assert!(r.authorises_nothing());
    }

    #[test]
    fn other_txt_values_are_not_spf() {
        assert!(SpfRecord::parse("google-site-verification=abc").is_none());
        assert!(SpfRecord::parse("v=spf10 a").is_none());
    }
}
