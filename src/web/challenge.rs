//! The pending HTTP-01 challenges (RFC 8555 §8.3): which token the plain-HTTP listener
//! answers, for which host, with which key authorization.
//!
//! This module owns the store and its bounds (token length and alphabet, number of pending
//! tokens). Tokens are put in and taken out by the daemon's ACME orders (an order's when it
//! ends, valid or failed; a domain's when it is dissociated); the listener only reads. It
//! must not speak ACME nor decide which listener answers (`web` answers over plain HTTP
//! only).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The path prefix of a challenge (RFC 8555 §8.3).
pub const PATH: &str = "/.well-known/acme-challenge/";
/// A longer token is refused (RFC 8555 tokens are base64url of at least 128 bits: 22
/// characters; CAs send 43).
pub const MAX_TOKEN_LEN: usize = 128;
/// At most this many tokens pending at once (an order has one per name, at most three;
/// `acme.concurrency` orders run at once).
pub const MAX_PENDING: usize = 4096;

/// Why a token was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the CA's token is not 1 to {MAX_TOKEN_LEN} base64url characters")]
    BadToken,
    #[error("{MAX_PENDING} HTTP-01 challenges are already pending")]
    Full,
}

struct Pending {
    /// The associated domain it was issued for (lower case, no final dot).
    domain: String,
    key_authorization: String,
}

/// The pending tokens, by (host, token).
#[derive(Default)]
pub struct ChallengeTokens {
    pending: Mutex<BTreeMap<(String, String), Pending>>,
}

/// Whether `token` is one the store may hold: base64url, bounded.
pub fn valid_token(token: &str) -> bool {
    (1..=MAX_TOKEN_LEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn host_key(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl ChallengeTokens {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `token` on `host` with `key_authorization` until removed; `domain` is the
    /// associated domain it belongs to.
    pub fn insert(
        &self,
        domain: &str,
        host: &str,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), TokenError> {
        if !valid_token(token) {
            return Err(TokenError::BadToken);
        }
        let Ok(mut pending) = self.pending.lock() else {
            return Err(TokenError::Full);
        };
        let key = (host_key(host), token.to_string());
        if pending.len() >= MAX_PENDING && !pending.contains_key(&key) {
            return Err(TokenError::Full);
        }
        pending.insert(
            key,
            Pending {
                domain: host_key(domain),
                key_authorization: key_authorization.to_string(),
            },
        );
        Ok(())
    }

    /// Stops answering `token` on `host`.
    pub fn remove(&self, host: &str, token: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&(host_key(host), token.to_string()));
        }
    }

    /// Stops answering every token of `domain` (its association went).
    pub fn remove_domain(&self, domain: &str) {
        let domain = host_key(domain);
        if let Ok(mut pending) = self.pending.lock() {
            pending.retain(|_, p| p.domain != domain);
        }
    }

    /// The key authorization of `token` on `host` (lower case, no port), if pending.
    pub fn answer(&self, host: &str, token: &str) -> Option<String> {
        if !valid_token(token) {
            return None;
        }
        let pending = self.pending.lock().ok()?;
        pending
            .get(&(host_key(host), token.to_string()))
            .map(|p| p.key_authorization.clone())
    }

    /// How many tokens are pending.
    pub fn len(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_answered_only_on_the_host_it_was_issued_for() {
        let t = ChallengeTokens::new();
        t.insert(
            "ext.test",
            "mta-sts.ext.test",
            "abc_DEF-1",
            "abc_DEF-1.thumb",
        )
        .unwrap();
        assert_eq!(
            t.answer("mta-sts.ext.test", "abc_DEF-1").as_deref(),
            Some("abc_DEF-1.thumb")
        );
        assert_eq!(t.answer("autoconfig.ext.test", "abc_DEF-1"), None);
        // Tokens are base64url: case matters.
        assert_eq!(t.answer("mta-sts.ext.test", "ABC_def-1"), None);
        t.remove("mta-sts.ext.test", "abc_DEF-1");
        assert!(t.is_empty());
    }

    #[test]
    fn a_token_that_is_not_bounded_base64url_is_refused() {
        let t = ChallengeTokens::new();
        for bad in ["", "a/b", "a.b", "../x", &"a".repeat(MAX_TOKEN_LEN + 1)] {
            assert_eq!(
                t.insert("ext.test", "mta-sts.ext.test", bad, "k"),
                Err(TokenError::BadToken),
                "{bad:?}"
            );
        }
        assert!(t.is_empty());
    }

    #[test]
    fn dissociating_a_domain_removes_its_tokens_only() {
        let t = ChallengeTokens::new();
        t.insert("ext.test", "mta-sts.ext.test", "t1", "k1")
            .unwrap();
        t.insert("ext.test", "autoconfig.ext.test", "t2", "k2")
            .unwrap();
        t.insert("other.test", "mta-sts.other.test", "t3", "k3")
            .unwrap();
        t.remove_domain("ext.test.");
        assert_eq!(t.len(), 1);
        assert!(t.answer("mta-sts.other.test", "t3").is_some());
    }

    #[test]
    fn the_store_is_bounded() {
        let t = ChallengeTokens::new();
        for i in 0..MAX_PENDING {
            t.insert("ext.test", "mta-sts.ext.test", &format!("t{i}"), "k")
                .unwrap();
        }
        assert_eq!(
            t.insert("ext.test", "mta-sts.ext.test", "one-more", "k"),
            Err(TokenError::Full)
        );
    }
}
