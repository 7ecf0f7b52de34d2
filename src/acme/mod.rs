//! Certificates by ACME (RFC 8555) with DNS-01 or HTTP-01 challenges: the account, one
//! order for the web names of a domain, and the files under `<keys_dir>/acme/`.
//!
//! This module owns the protocol steps (through instant-acme, on the small client of
//! [`http`]), the account file (`account.json`, 0600, refused when looser), each domain's
//! issued pair (`<domain>.crt`, `<domain>.key` 0600), reading a certificate's expiry, and
//! the CA's reason when a validation fails. It must not publish challenges itself (the
//! [`Challenges`] it is handed does: records through the daemon's single writer, or tokens
//! for the plain-HTTP listener), decide when an order is due (the daemon's scheduler does),
//! nor serve the certificates (`web::tls` does).

pub mod http;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};

use crate::config::AcmeConfig;
use crate::provision::records::Families;

/// The folder under `keys_dir`.
pub const DIR: &str = "acme";
/// A request to the directory that takes longer than this fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an order failed, said for an operator (status page, log).
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("the ACME client cannot be made: {0}")]
    Trust(#[from] http::TrustError),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("ACME directory {url}: {source}")]
    Directory {
        url: String,
        source: instant_acme::Error,
    },
    #[error("order for {names}: {step}: {source}")]
    Order {
        names: String,
        step: &'static str,
        source: instant_acme::Error,
    },
    #[error("order for {names}: {reason}")]
    Refused { names: String, reason: String },
    #[error("challenge records for {names}: {reason}")]
    Challenge { names: String, reason: String },
}

/// Which challenge proves control of a domain's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum ChallengeKind {
    /// `_acme-challenge.<name>` TXT, written into a hosted zone.
    #[default]
    #[serde(rename = "dns-01")]
    Dns01,
    /// `http://<name>/.well-known/acme-challenge/<token>`, answered by the plain-HTTP
    /// listener (external domains whose web names point at it).
    #[serde(rename = "http-01")]
    Http01,
}

impl ChallengeKind {
    fn acme_type(self) -> ChallengeType {
        match self {
            Self::Dns01 => ChallengeType::Dns01,
            Self::Http01 => ChallengeType::Http01,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns01 => "dns-01",
            Self::Http01 => "http-01",
        }
    }
}

/// One challenge to answer for one name. DNS-01: `_acme-challenge.<name>` TXT
/// `<dns_value>`; HTTP-01: `http://<name>/.well-known/acme-challenge/<token>` answering
/// `<key_authorization>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The name proved: lower case, no final dot, no `*.`.
    pub name: String,
    pub token: String,
    pub key_authorization: String,
    pub dns_value: String,
}

impl Proof {
    /// The DNS-01 record's owner: `_acme-challenge.<name>.`.
    pub fn record_name(&self) -> String {
        format!("_acme-challenge.{}.", self.name)
    }
}

/// Who publishes and removes the challenges of an order: for DNS-01 the daemon's single
/// writer (journal, NOTIFY and DNSSEC follow as for any change), for HTTP-01 the pending
/// tokens the plain-HTTP listener answers from.
pub trait Challenges: Send + Sync {
    /// The challenge type this publishes.
    fn kind(&self) -> ChallengeKind;
    fn publish(
        &self,
        proofs: &[Proof],
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
    fn withdraw(
        &self,
        proofs: &[Proof],
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

/// A certificate as issued: the chain and its key in PEM, and what renewal needs of it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
    pub leaf: Leaf,
}

/// What is read from a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leaf {
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
    /// Hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// Its DNS names (subjectAltName), lower case.
    pub names: Vec<String>,
}

/// Reads the first certificate of a PEM chain.
pub fn read_leaf(chain_pem: &str) -> Result<Leaf, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or("no CERTIFICATE block")?
        .map_err(|e| format!("not PEM: {e}"))?;
    let cert = webpki::EndEntityCert::try_from(&der).map_err(|e| format!("not X.509: {e}"))?;
    let (not_before, not_after) = validity(&der).ok_or("not X.509: no readable validity")?;
    Ok(Leaf {
        names: cert
            .valid_dns_names()
            .map(|n| n.to_ascii_lowercase())
            .collect(),
        not_before,
        not_after,
        serial: cert.serial().iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// One DER element: its tag, its content and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// `notBefore` and `notAfter` of a certificate (RFC 5280 §4.1.2.5), in unix seconds.
fn validity(cert: &[u8]) -> Option<(u64, u64)> {
    let (0x30, cert, _) = der(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = der(cert)? else {
        return None;
    };
    let (tag, _, mut rest) = der(tbs)?;
    if tag == 0xa0 {
        // [0] version; the serial follows.
        rest = der(rest)?.2;
    }
    // The signature algorithm and the issuer, then the validity.
    let rest = der(der(rest)?.2)?.2;
    let (0x30, validity, _) = der(rest)? else {
        return None;
    };
    let (t1, before, rest) = der(validity)?;
    let (t2, after, _) = der(rest)?;
    Some((time(t1, before)?, time(t2, after)?))
}

/// UTCTime (`YYMMDDHHMMSSZ`, 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let full = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: u64 = text[..2].parse().ok()?;
            format!("{}{text}", if yy < 50 { "20" } else { "19" })
        }
        (0x18, 14) => text.to_string(),
        _ => return None,
    };
    if !full.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| full[r].parse::<u64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(8..10)?, n(10..12)?, n(12..14)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// When a certificate is renewed (unix seconds, the CA's clock): `renew_before` before it
/// expires, but never before two thirds of its lifetime, so that a CA issuing certificates
/// shorter than `renew_before` (six-day ones) is not asked again at once, in a loop.
pub fn renew_point(leaf: &Leaf, renew_before_secs: u64) -> u64 {
    let lifetime = leaf.not_after.saturating_sub(leaf.not_before);
    leaf.not_after
        .saturating_sub(renew_before_secs)
        .max(leaf.not_before + lifetime / 3 * 2)
}

/// The web names of `domain` (absolute, lower case) to certify: the configured labels whose
/// family the association publishes. Empty: no certificate is wanted.
pub fn names_for(domain: &str, families: &Families, labels: &[String]) -> Vec<String> {
    let base = domain.trim_end_matches('.');
    labels
        .iter()
        .filter(|l| match l.as_str() {
            "mta-sts" => families.mta_sts,
            "autoconfig" | "autodiscover" => families.autoconfig,
            _ => false,
        })
        .map(|l| format!("{l}.{base}"))
        .collect()
}

/// The files of a domain's issued pair: `<keys_dir>/acme/<domain>.crt` and `.key`.
pub fn pair_files(keys_dir: &Path, domain: &str) -> (PathBuf, PathBuf) {
    let dir = keys_dir.join(DIR);
    let stem = domain.trim_end_matches('.').to_ascii_lowercase();
    (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    )
}

/// Reads a domain's issued pair, if there is one; a key file looser than 0600 is refused.
pub fn read_pair(
    keys_dir: &Path,
    domain: &str,
) -> Result<Option<(String, String, Leaf)>, AcmeError> {
    let (crt, key) = pair_files(keys_dir, domain);
    let file_error = |p: &Path, reason: String| AcmeError::File {
        path: p.display().to_string(),
        reason,
    };
    let chain = match std::fs::read_to_string(&crt) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(&crt, e.to_string())),
    };
    crate::durable::check_private(&key, false, "an ACME certificate key")
        .map_err(|r| file_error(&key, r))?;
    let key_pem = std::fs::read_to_string(&key).map_err(|e| file_error(&key, e.to_string()))?;
    let leaf = read_leaf(&chain).map_err(|r| file_error(&crt, r))?;
    Ok(Some((chain, key_pem, leaf)))
}

/// Saves a domain's issued pair durably: the key (0600) first, then the chain.
pub fn save_pair(keys_dir: &Path, domain: &str, issued: &Issued) -> Result<(), AcmeError> {
    let dir = keys_dir.join(DIR);
    crate::durable::create_private_dir(&dir).map_err(|e| AcmeError::File {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let (crt, key) = pair_files(keys_dir, domain);
    let write = |p: &Path, text: &str, mode: u32| {
        crate::durable::write_atomically(p, text.as_bytes(), mode).map_err(|e| AcmeError::File {
            path: p.display().to_string(),
            reason: e.to_string(),
        })
    };
    write(&key, &issued.key_pem, 0o600)?;
    write(&crt, &issued.chain_pem, 0o644)
}

/// Removes a domain's issued pair (its association went).
pub fn remove_pair(keys_dir: &Path, domain: &str) {
    let (crt, key) = pair_files(keys_dir, domain);
    for f in [crt, key] {
        let _ = std::fs::remove_file(f);
    }
    let _ = crate::durable::sync_dir(&keys_dir.join(DIR));
}

/// The domains that have an issued pair on disk (lower case, no final dot).
pub fn saved_domains(keys_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(keys_dir.join(DIR)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".crt")
                .filter(|s| !s.starts_with('.'))
                .map(str::to_string)
        })
        .collect()
}

/// The account file: which directory it belongs to, and its credentials (key included).
#[derive(Serialize, Deserialize)]
struct AccountFile {
    directory: String,
    credentials: AccountCredentials,
}

/// An ACME client for one directory: the HTTP client, the account (made or read once),
/// and the limit on orders under way.
pub struct Client {
    config: AcmeConfig,
    keys_dir: PathBuf,
    http: http::Client,
    account: tokio::sync::Mutex<Option<Account>>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Client {
    pub fn new(config: &AcmeConfig, keys_dir: &Path) -> Result<Self, AcmeError> {
        let mut roots = vec![config.ca_file.as_path()];
        if let Some(extra) = &config.extra_ca_file {
            roots.push(extra.as_path());
        }
        Ok(Self {
            http: http::Client::new(&roots, REQUEST_TIMEOUT)?,
            config: config.clone(),
            keys_dir: keys_dir.to_path_buf(),
            account: tokio::sync::Mutex::new(None),
            slots: Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1))),
        })
    }

    fn account_file(&self) -> PathBuf {
        self.keys_dir.join(DIR).join("account.json")
    }

    /// The account: read from `account.json` when it is for this directory, else made at
    /// the CA and saved (0600) before use.
    /// `fresh`: the saved account is unknown to the CA (a test CA restarted, an account
    /// deleted): a new one is made and saved in its place.
    async fn account(&self, fresh: bool) -> Result<Account, AcmeError> {
        let mut cached = self.account.lock().await;
        if fresh {
            *cached = None;
        }
        if let Some(a) = cached.as_ref() {
            return Ok(a.clone());
        }
        let url = self.config.directory_url.clone();
        let path = self.account_file();
        let file_error = |reason: String| AcmeError::File {
            path: path.display().to_string(),
            reason,
        };
        let directory = |source| AcmeError::Directory {
            url: url.clone(),
            source,
        };
        crate::durable::check_private(&path, false, "the ACME account key").map_err(file_error)?;
        let saved = match std::fs::read(&path) {
            Ok(bytes) => Some(
                serde_json::from_slice::<AccountFile>(&bytes)
                    .map_err(|e| file_error(format!("not an account file: {e}")))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(file_error(e.to_string())),
        };
        let account = match saved {
            Some(f) if f.directory == url && !fresh => {
                Account::builder_with_http(Box::new(self.http.clone()))
                    .from_credentials(f.credentials)
                    .await
                    .map_err(directory)?
            }
            _ => {
                let contact = self.config.contact.as_ref().map(|c| format!("mailto:{c}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (account, credentials) =
                    Account::builder_with_http(Box::new(self.http.clone()))
                        .create(
                            &NewAccount {
                                contact: &contacts,
                                terms_of_service_agreed: true,
                                only_return_existing: false,
                            },
                            url.clone(),
                            None,
                        )
                        .await
                        .map_err(directory)?;
                let file = AccountFile {
                    directory: url.clone(),
                    credentials,
                };
                let bytes = serde_json::to_vec(&file).map_err(|e| file_error(e.to_string()))?;
                let dir = self.keys_dir.join(DIR);
                crate::durable::create_private_dir(&dir)
                    .and_then(|()| crate::durable::write_atomically(&path, &bytes, 0o600))
                    .map_err(|e| file_error(e.to_string()))?;
                tracing::info!(directory = %url, "ACME account made");
                account
            }
        };
        *cached = Some(account.clone());
        Ok(account)
    }

    /// Orders one certificate for `names` with the challenge of `challenges`: publishes
    /// the challenges through it, tells the CA, waits for it, and always withdraws them
    /// again (valid or failed).
    pub async fn issue(
        &self,
        names: &[String],
        challenges: &impl Challenges,
    ) -> Result<Issued, AcmeError> {
        let _slot = self.slots.clone().acquire_owned().await;
        let account = self.account(false).await?;
        let mut published = Vec::new();
        let mut result = self
            .order(&account, names, challenges, &mut published)
            .await;
        if let Err(AcmeError::Order {
            source: instant_acme::Error::Api(problem),
            ..
        }) = &result
            && problem
                .r#type
                .as_deref()
                .is_some_and(|t| t.ends_with(":accountDoesNotExist"))
        {
            tracing::warn!("the CA does not know the saved ACME account; making a new one");
            let account = self.account(true).await?;
            result = self
                .order(&account, names, challenges, &mut published)
                .await;
        }
        if !published.is_empty()
            && let Err(reason) = challenges.withdraw(&published).await
        {
            // The certificate (if any) is still good; the leftovers are reported.
            tracing::warn!(names = %names.join(","), %reason, "ACME challenges not withdrawn");
        }
        result
    }

    async fn order(
        &self,
        account: &Account,
        names: &[String],
        challenges: &impl Challenges,
        published: &mut Vec<Proof>,
    ) -> Result<Issued, AcmeError> {
        let kind = challenges.kind();
        let joined = names.join(",");
        let step = |step: &'static str| {
            let names = joined.clone();
            move |source| AcmeError::Order {
                names,
                step,
                source,
            }
        };
        let identifiers: Vec<Identifier> =
            names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(step("new order"))?;
        // First the challenges of every pending authorization (one write), then the CA is
        // told.
        let mut proofs = Vec::new();
        {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz.map_err(step("authorization"))?;
                match authz.status {
                    AuthorizationStatus::Pending => {}
                    // Still valid from an earlier order: nothing to prove.
                    AuthorizationStatus::Valid => continue,
                    other => {
                        return Err(AcmeError::Refused {
                            names: joined.clone(),
                            reason: format!("an authorization is {other:?}"),
                        });
                    }
                }
                let Some(challenge) = authz.challenge(kind.acme_type()) else {
                    return Err(AcmeError::Refused {
                        names: joined.clone(),
                        reason: format!("the CA offers no {} challenge", kind.as_str()),
                    });
                };
                let name = challenge.identifier().to_string();
                let key_authorization = challenge.key_authorization();
                proofs.push(Proof {
                    name: name.trim_start_matches("*.").to_ascii_lowercase(),
                    token: challenge.token.clone(),
                    key_authorization: key_authorization.as_str().to_string(),
                    dns_value: key_authorization.dns_value(),
                });
            }
        }
        if !proofs.is_empty() {
            // Recorded before writing: a write that half happened is still withdrawn.
            published.extend(proofs.iter().cloned());
            challenges
                .publish(&proofs)
                .await
                .map_err(|reason| AcmeError::Challenge {
                    names: joined.clone(),
                    reason,
                })?;
            // The authorizations are cached: this second pass asks the CA nothing new.
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz.map_err(step("authorization"))?;
                if authz.status != AuthorizationStatus::Pending {
                    continue;
                }
                if let Some(mut challenge) = authz.challenge(kind.acme_type()) {
                    challenge
                        .set_ready()
                        .await
                        .map_err(step("challenge ready"))?;
                }
            }
        }
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(100))
            .backoff(1.5)
            .timeout(Duration::from_secs(60));
        let polled = order.poll_ready(&retries).await;
        let detail = match polled {
            Ok(OrderStatus::Ready) => None,
            Ok(status) => Some(
                order
                    .state()
                    .error
                    .as_ref()
                    .map_or_else(|| format!("the order is {status:?}"), problem_text),
            ),
            // The order became invalid and carries a problem: the challenge's says more.
            // (A problem answered to the poll itself, e.g. `accountDoesNotExist`, is not.)
            Err(instant_acme::Error::Api(problem))
                if order.state().status == OrderStatus::Invalid =>
            {
                Some(problem_text(&problem))
            }
            Err(e) => return Err(step("validation")(e)),
        };
        if let Some(detail) = detail {
            // The CA's reason is in the failed challenge (RFC 8555 §7.1.3: its `error`).
            let reasons = challenge_problems(&mut order, kind).await;
            let reason = if reasons.is_empty() {
                detail
            } else {
                reasons.join("; ")
            };
            return Err(AcmeError::Refused {
                names: joined.clone(),
                reason: format!("{} validation failed: {reason}", kind.as_str()),
            });
        }
        let key_pem = order.finalize().await.map_err(step("finalize"))?;
        let chain_pem = order
            .poll_certificate(&retries)
            .await
            .map_err(step("certificate"))?;
        let leaf = read_leaf(&chain_pem).map_err(|reason| AcmeError::Refused {
            names: joined.clone(),
            reason: format!("the issued certificate does not read: {reason}"),
        })?;
        Ok(Issued {
            chain_pem,
            key_pem,
            leaf,
        })
    }
}

/// A problem document as an operator reads it: its detail, then its type.
fn problem_text(p: &instant_acme::Problem) -> String {
    let detail = p.detail.as_deref().unwrap_or("no detail");
    match &p.r#type {
        Some(t) => format!("{detail} ({t})"),
        None => detail.to_string(),
    }
}

/// The problem of each failed challenge of `kind` in the order, `<name>: <problem>`,
/// asked again of the CA (the cached authorizations predate the validation).
async fn challenge_problems(order: &mut instant_acme::Order, kind: ChallengeKind) -> Vec<String> {
    let wanted = kind.acme_type();
    let mut out = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let Ok(mut authz) = authz else { continue };
        let name = authz.identifier().to_string();
        let Ok(state) = authz.refresh().await else {
            continue;
        };
        for c in &state.challenges {
            if c.r#type == wanted
                && let Some(p) = &c.error
            {
                out.push(format!("{name}: {}", problem_text(p)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_names_whose_family_is_published_are_certified() {
        let labels: Vec<String> = AcmeConfig::default().names;
        let mut f = Families {
            autoconfig: false,
            mta_sts: true,
            ..Families::default()
        };
        assert_eq!(
            names_for("shop.test.", &f, &labels),
            vec!["mta-sts.shop.test"]
        );
        f.autoconfig = true;
        f.mta_sts = false;
        assert_eq!(
            names_for("shop.test.", &f, &labels),
            vec!["autoconfig.shop.test", "autodiscover.shop.test"]
        );
        f.autoconfig = false;
        assert!(names_for("shop.test.", &f, &labels).is_empty());
    }

    #[test]
    fn renewal_is_renew_before_the_expiry_or_at_two_thirds_of_a_short_lifetime() {
        let day = 86_400;
        let leaf = |days: u64| Leaf {
            not_before: 1000 * day,
            not_after: (1000 + days) * day,
            serial: String::new(),
            names: Vec::new(),
        };
        assert_eq!(renew_point(&leaf(90), 30 * day), 1060 * day);
        assert_eq!(renew_point(&leaf(365), 30 * day), 1335 * day);
        assert_eq!(renew_point(&leaf(6), 30 * day), 1004 * day);
    }

    #[test]
    fn a_leaf_gives_its_expiry_and_serial() {
        let mut params = rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2030, 1, 2);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0a, 0xbc]));
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        let leaf = read_leaf(&pem).unwrap();
        assert_eq!(leaf.not_after, 1_893_542_400);
        assert_eq!(leaf.serial, "0abc");
        assert_eq!(leaf.names, vec!["a.test"]);
        assert!(read_leaf("nothing").is_err());
        // From 2050 on the time is a GeneralizedTime.
        params.not_before = rcgen::date_time_ymd(2049, 12, 31);
        params.not_after = rcgen::date_time_ymd(2060, 2, 29);
        let leaf = read_leaf(&params.self_signed(&key).unwrap().pem()).unwrap();
        assert_eq!(leaf.not_before, 2_524_521_600);
        assert_eq!(leaf.not_after, 2_845_238_400);
    }

    #[test]
    fn a_certificate_time_that_does_not_read_gives_nothing() {
        assert_eq!(time(0x17, b"300102000000Z"), Some(1_893_542_400));
        for bad in [
            &b"3001020000Z"[..],
            b"301302000000Z",
            b"30010200000aZ",
            b"300102000000",
        ] {
            assert_eq!(time(0x17, bad), None, "{bad:?}");
        }
        assert_eq!(der(&[0x30, 0x85, 0, 0, 0, 0, 1]), None);
        assert_eq!(validity(&[0x30, 0x00]), None);
    }
}
