//! DKIM signatures (RFC 6376, RFC 8463): canonicalisation, signing and verifying messages.
//!
//! This module owns the byte-exact rules: messages are taken with CRLF line ends (bare LF is
//! converted first, as an MTA would put them on the wire), relaxed/relaxed when signing,
//! relaxed or simple when verifying, the usual headers signed with `From` oversigned, and
//! Ed25519 signing the SHA-256 of the header data (RFC 8463 §3). Fetching keys from DNS is
//! the caller's job (a closure), so this module does no I/O.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::digest::{SHA256, digest};
use ring::rand::SystemRandom;
use ring::signature::{ED25519, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, UnparsedPublicKey};

use super::key::{DkimAlgorithm, SigningKey};

/// Headers signed when present, in this order; `From` is signed once more than it occurs
/// so that no `From` can be added after signing.
const SIGNED_HEADERS: [&str; 11] = [
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the message has no empty line between its header and its body")]
    NoSeparator,
    #[error("the message has no From header")]
    NoFrom,
    #[error("header line {0} is not a header (no colon)")]
    BadHeader(usize),
    #[error("signing failed")]
    Sign,
}

/// A message split into headers (each with its continuation lines, CRLF-terminated) and body.
pub struct Message {
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Converts bare LF line ends to CRLF.
pub fn to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

impl Message {
    /// Parses a message (CRLF or LF line ends).
    pub fn parse(raw: &[u8]) -> Result<Self, MessageError> {
        let data = to_crlf(raw);
        let split = if data.starts_with(b"\r\n") {
            Some(0)
        } else {
            data.windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + 2)
        };
        let Some(split) = split else {
            return Err(MessageError::NoSeparator);
        };
        let (head, rest) = data.split_at(split);
        let body = rest[2..].to_vec();
        let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
        for (i, line) in head.split_inclusive(|&b| b == b'\n').enumerate() {
            if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                match headers.last_mut() {
                    Some((_, raw)) => raw.extend_from_slice(line),
                    None => return Err(MessageError::BadHeader(i + 1)),
                }
                continue;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(MessageError::BadHeader(i + 1));
            };
            let name = String::from_utf8_lossy(&line[..colon])
                .trim()
                .to_ascii_lowercase();
            headers.push((name, line.to_vec()));
        }
        if !headers.iter().any(|(n, _)| n == "from") {
            return Err(MessageError::NoFrom);
        }
        Ok(Self { headers, body })
    }

    /// The whole message with CRLF line ends, as it is signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self
            .headers
            .iter()
            .flat_map(|(_, raw)| raw.iter().copied())
            .collect();
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 6376 §3.4.4: relaxed body canonicalisation.
pub fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        let content = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        let mut in_wsp = false;
        let mut canon = Vec::with_capacity(content.len());
        for &b in content {
            if is_wsp(b) {
                in_wsp = true;
            } else {
                if in_wsp {
                    canon.push(b' ');
                }
                in_wsp = false;
                canon.push(b);
            }
        }
        out.extend_from_slice(&canon);
        out.extend_from_slice(b"\r\n");
    }
    trim_trailing_empty_lines(out)
}

/// RFC 6376 §3.4.3: simple body canonicalisation.
pub fn simple_body(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    let out = trim_trailing_empty_lines(out);
    if out.is_empty() {
        b"\r\n".to_vec()
    } else {
        out
    }
}

fn trim_trailing_empty_lines(mut out: Vec<u8>) -> Vec<u8> {
    while out.ends_with(b"\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    if out == b"\r\n" {
        out.clear();
    }
    out
}

/// RFC 6376 §3.4.2: relaxed header canonicalisation of one header (with its CRLF).
pub fn relaxed_header(raw: &[u8]) -> Vec<u8> {
    let colon = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
    let name = String::from_utf8_lossy(&raw[..colon])
        .trim()
        .to_ascii_lowercase();
    let value = raw.get(colon + 1..).unwrap_or_default();
    let mut v = Vec::with_capacity(value.len());
    let mut in_wsp = false;
    for &b in value {
        if b == b'\r' || b == b'\n' {
            continue;
        }
        if is_wsp(b) {
            in_wsp = true;
        } else {
            if in_wsp && !v.is_empty() {
                v.push(b' ');
            }
            in_wsp = false;
            v.push(b);
        }
    }
    let mut out = name.into_bytes();
    out.push(b':');
    out.extend_from_slice(&v);
    out.extend_from_slice(b"\r\n");
    out
}

/// The header instances named by `h=`, bottom-up per name (RFC 6376 §5.4.2); a name listed
/// more often than it occurs contributes nothing for the extra entries.
fn selected_headers<'m>(message: &'m Message, names: &[String]) -> Vec<&'m [u8]> {
    let mut used: Vec<(String, usize)> = Vec::new();
    let mut out = Vec::new();
    for name in names {
        let name = name.trim().to_ascii_lowercase();
        let count = used.iter_mut().find(|(n, _)| *n == name);
        let skip = count.as_ref().map_or(0, |(_, c)| *c);
        let instance = message
            .headers
            .iter()
            .rev()
            .filter(|(n, _)| *n == name)
            .nth(skip);
        if let Some((_, raw)) = instance {
            out.push(raw.as_slice());
        }
        match count {
            Some((_, c)) => *c += 1,
            None => used.push((name, 1)),
        }
    }
    out
}

/// Signs `message` for `domain` with `selector`; returns the `DKIM-Signature` header line(s)
/// (folded, CRLF-terminated) to put on top of the message.
pub fn sign(
    message: &Message,
    domain: &str,
    selector: &str,
    key: &SigningKey,
    now: u64,
) -> Result<String, MessageError> {
    let body_hash = B64.encode(digest(&SHA256, &relaxed_body(&message.body)));
    let mut names: Vec<String> = Vec::new();
    for wanted in SIGNED_HEADERS {
        let n = message
            .headers
            .iter()
            .filter(|(name, _)| name == wanted)
            .count();
        let times = if wanted == "from" { n + 1 } else { n };
        names.extend(std::iter::repeat_n(wanted.to_string(), times));
    }
    let domain = domain.trim_end_matches('.');
    // The header is signed as it will be sent, folded one tag group per line, with b= empty.
    let unsigned = format!(
        "DKIM-Signature: v=1; a={}; c=relaxed/relaxed; d={domain}; s={selector};\r\n\tt={now}; h={};\r\n\tbh={body_hash};\r\n\tb=",
        key.algorithm().signature_algorithm(),
        names.join(":")
    );
    let mut data: Vec<u8> = selected_headers(message, &names)
        .into_iter()
        .flat_map(relaxed_header)
        .collect();
    let mut own = relaxed_header(unsigned.as_bytes());
    own.truncate(own.len() - 2);
    data.extend_from_slice(&own);
    let signature = match key {
        SigningKey::Rsa(pair) => {
            let mut sig = vec![0u8; pair.public().modulus_len()];
            pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), &data, &mut sig)
                .map_err(|_| MessageError::Sign)?;
            sig
        }
        SigningKey::Ed25519(pair) => pair.sign(digest(&SHA256, &data).as_ref()).as_ref().to_vec(),
    };
    let b64 = B64.encode(signature);
    let folded: Vec<&str> = b64
        .as_bytes()
        .chunks(72)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    Ok(format!("{unsigned}{}\r\n", folded.join("\r\n\t ")))
}

/// The outcome of checking one DKIM-Signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub domain: String,
    pub selector: String,
    pub result: Result<(), String>,
}

fn tags(value: &str) -> Vec<(String, String)> {
    value
        .split(';')
        .filter_map(|t| {
            let (k, v) = t.split_once('=')?;
            Some((
                k.trim().to_string(),
                v.chars().filter(|c| !c.is_whitespace()).collect(),
            ))
        })
        .collect()
}

fn tag<'t>(tags: &'t [(String, String)], name: &str) -> Option<&'t str> {
    tags.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Verifies every DKIM-Signature of `message`. `lookup(name)` returns the TXT strings of
/// the key record `<selector>._domainkey.<domain>` (joined per record).
pub fn verify(
    message: &Message,
    mut lookup: impl FnMut(&str) -> Result<Vec<String>, String>,
) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for (name, raw) in &message.headers {
        if name != "dkim-signature" {
            continue;
        }
        let text = String::from_utf8_lossy(raw);
        let value = text.split_once(':').map_or("", |(_, v)| v);
        let t = tags(value);
        let domain = tag(&t, "d").unwrap_or_default().to_string();
        let selector = tag(&t, "s").unwrap_or_default().to_string();
        let result = verify_one(message, raw, &t, &domain, &selector, &mut lookup);
        verdicts.push(Verdict {
            domain,
            selector,
            result,
        });
    }
    verdicts
}

fn verify_one(
    message: &Message,
    raw: &[u8],
    t: &[(String, String)],
    domain: &str,
    selector: &str,
    lookup: &mut impl FnMut(&str) -> Result<Vec<String>, String>,
) -> Result<(), String> {
    let algorithm = match tag(t, "a") {
        Some("rsa-sha256") => DkimAlgorithm::Rsa,
        Some("ed25519-sha256") => DkimAlgorithm::Ed25519,
        other => return Err(format!("unsupported algorithm {other:?}")),
    };
    let (header_c, body_c) = match tag(t, "c").unwrap_or("simple/simple").split_once('/') {
        Some((h, b)) => (h.to_string(), b.to_string()),
        None => (
            tag(t, "c").unwrap_or("simple").to_string(),
            "simple".to_string(),
        ),
    };
    let body = if body_c == "relaxed" {
        relaxed_body(&message.body)
    } else {
        simple_body(&message.body)
    };
    let body = match tag(t, "l").and_then(|l| l.parse::<usize>().ok()) {
        Some(l) => body[..l.min(body.len())].to_vec(),
        None => body,
    };
    let bh = B64.encode(digest(&SHA256, &body));
    if Some(bh.as_str()) != tag(t, "bh") {
        return Err("body hash mismatch (the body was changed)".into());
    }
    let names: Vec<String> = tag(t, "h")
        .unwrap_or_default()
        .split(':')
        .map(str::to_string)
        .collect();
    let canon = |h: &[u8]| -> Vec<u8> {
        if header_c == "relaxed" {
            relaxed_header(h)
        } else {
            h.to_vec()
        }
    };
    let mut data: Vec<u8> = selected_headers(message, &names)
        .into_iter()
        .flat_map(canon)
        .collect();
    // The signature header itself, with the b= value emptied.
    let own = String::from_utf8_lossy(raw);
    let without_b = remove_b_value(&own);
    let mut own = canon(without_b.as_bytes());
    if own.ends_with(b"\r\n") {
        own.truncate(own.len() - 2);
    }
    data.extend_from_slice(&own);
    let signature = B64
        .decode(tag(t, "b").unwrap_or_default())
        .map_err(|e| format!("bad b= value: {e}"))?;

    let record_name = format!("{selector}._domainkey.{domain}");
    let records = lookup(&record_name)?;
    let record = records
        .iter()
        .find(|r| r.contains("p="))
        .ok_or_else(|| format!("no key record at {record_name}"))?;
    let rt = tags(record);
    let p = tag(&rt, "p").unwrap_or_default();
    if p.is_empty() {
        return Err("the key is revoked (empty p=)".into());
    }
    let public = B64.decode(p).map_err(|e| format!("bad p= value: {e}"))?;
    match algorithm {
        DkimAlgorithm::Rsa => {
            let pkcs1 = rsa_pkcs1(&public)?;
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pkcs1)
                .verify(&data, &signature)
                .map_err(|_| "signature does not match (a signed header was changed)".to_string())
        }
        DkimAlgorithm::Ed25519 => UnparsedPublicKey::new(&ED25519, public)
            .verify(digest(&SHA256, &data).as_ref(), &signature)
            .map_err(|_| "signature does not match (a signed header was changed)".to_string()),
    }
}

/// An RSA public key as PKCS#1, from SubjectPublicKeyInfo or PKCS#1 DER.
fn rsa_pkcs1(der: &[u8]) -> Result<Vec<u8>, String> {
    use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
    use rsa::pkcs8::DecodePublicKey;
    let key = rsa::RsaPublicKey::from_public_key_der(der)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_der(der))
        .map_err(|e| format!("bad RSA public key: {e}"))?;
    key.to_pkcs1_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| format!("bad RSA public key: {e}"))
}

/// The header text with the value of its `b=` tag removed (RFC 6376 §3.7).
fn remove_b_value(header: &str) -> String {
    let mut out = String::with_capacity(header.len());
    let mut rest = header;
    loop {
        // Find a `b=` tag: at the start of the value or after `;`, possibly after FWS.
        let Some(pos) = find_b_tag(rest) else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        let end = after.find(';').unwrap_or(after.len());
        // Keep "b=" and drop its value.
        let eq = after.find('=').map_or(0, |e| e + 1);
        out.push_str(&after[..eq]);
        let tail = &after[end..];
        if tail.ends_with("\r\n") && !after[eq..end].ends_with("\r\n") {
            out.push_str(tail);
            return out;
        }
        if end == after.len() && after.ends_with("\r\n") {
            out.push_str("\r\n");
            return out;
        }
        rest = tail;
    }
}

fn find_b_tag(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut boundary = s.find(':').map_or(0, |c| c + 1);
    while i < bytes.len() {
        if i >= boundary {
            // skip FWS after a boundary
            let mut j = i;
            while j < bytes.len()
                && (bytes[j] == b' ' || bytes[j] == b'\t' || bytes[j] == b'\r' || bytes[j] == b'\n')
            {
                j += 1;
            }
            if j + 1 < bytes.len() && bytes[j] == b'b' {
                let mut k = j + 1;
                while k < bytes.len() && (bytes[k] == b' ' || bytes[k] == b'\t') {
                    k += 1;
                }
                if k < bytes.len() && bytes[k] == b'=' {
                    return Some(j);
                }
            }
            match s[i..].find(';') {
                Some(p) => {
                    i += p + 1;
                    boundary = i;
                }
                None => return None,
            }
        } else {
            i = boundary;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_body_drops_trailing_whitespace_only_lines() {
        assert_eq!(relaxed_body(b"Hello!\r\n  \r\n"), b"Hello!\r\n");
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
        assert_eq!(relaxed_body(b"no newline"), b"no newline\r\n");
    }

    #[test]
    fn relaxed_header_matches_rfc_example() {
        // RFC 6376 §3.4.5
        assert_eq!(relaxed_header(b"A: X\r\n"), b"a:X\r\n");
        assert_eq!(relaxed_header(b"B : Y\t\r\n\tZ  \r\n"), b"b:Y Z\r\n");
    }

    #[test]
    fn simple_body_of_an_empty_body_is_one_crlf() {
        assert_eq!(simple_body(b""), b"\r\n");
        assert_eq!(simple_body(b"a\r\n\r\n"), b"a\r\n");
    }

    #[test]
    fn a_message_without_separator_or_from_is_refused() {
        assert_eq!(
            Message::parse(b"From: a@b\r\nSubject: x").err(),
            Some(MessageError::NoSeparator)
        );
        assert_eq!(
            Message::parse(b"Subject: x\r\n\r\nbody").err(),
            Some(MessageError::NoFrom)
        );
    }

    #[test]
    fn b_value_is_removed_wherever_it_is() {
        assert_eq!(
            remove_b_value("DKIM-Signature: v=1; b=abc\r\n\tdef; bh=xyz\r\n"),
            "DKIM-Signature: v=1; b=; bh=xyz\r\n"
        );
        assert_eq!(
            remove_b_value("DKIM-Signature: v=1; bh=xyz; b=abc\r\n"),
            "DKIM-Signature: v=1; bh=xyz; b=\r\n"
        );
    }

    #[test]
    fn signatures_verify_and_a_changed_message_fails() {
        for algorithm in [DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa] {
            let generated = crate::dkim::key::generate(algorithm, 2048).unwrap();
            let key = SigningKey::from_pkcs8(&generated.pkcs8).unwrap();
            let record = format!(
                "v=DKIM1; k={}; p={}",
                algorithm.key_type(),
                generated.public
            );
            let msg = Message::parse(
                b"From: a@example.test\nTo: b@example.net\nSubject:  hi\n\tthere\n\nHello  \n\n\n",
            )
            .unwrap();
            let header = sign(&msg, "example.test", "s1", &key, 1_700_000_000).unwrap();
            let mut signed = header.into_bytes();
            signed.extend_from_slice(&msg.to_bytes());
            let parsed = Message::parse(&signed).unwrap();
            let verdicts = verify(&parsed, |_| Ok(vec![record.clone()]));
            assert_eq!(verdicts.len(), 1);
            assert_eq!(verdicts[0].result, Ok(()), "{algorithm:?}");
            let mut altered = signed.clone();
            let at = altered.len() - 5;
            altered[at] = b'X';
            let verdicts = verify(&Message::parse(&altered).unwrap(), |_| {
                Ok(vec![record.clone()])
            });
            assert!(verdicts[0].result.is_err());
        }
    }

    #[test]
    fn random_signature_headers_and_key_records_never_panic() {
        let mut state: u64 = 0x853c49e6748fea9b;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces = [
            "v=1",
            "a=rsa-sha256",
            "a=ed25519-sha256",
            "c=relaxed/simple",
            "c=simple",
            "d=x.test",
            "s=s1",
            "h=from:to",
            "bh=",
            "b=",
            "l=5",
            "l=999999",
            "b=AAAA",
            "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            ";",
            "=",
            " b = ",
            "\r\n\t",
        ];
        let records = [
            "v=DKIM1; p=",
            "p=AAAA",
            "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
            "k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
            "garbage",
        ];
        for _ in 0..2000 {
            let mut header = String::from("DKIM-Signature:");
            for _ in 0..(next() % 8) {
                header.push_str(pieces[(next() as usize) % pieces.len()]);
                header.push(';');
            }
            let raw = format!("{header}\r\nFrom: a@x.test\r\n\r\nbody\r\n");
            let Ok(message) = Message::parse(raw.as_bytes()) else {
                continue;
            };
            let record = records[(next() as usize) % records.len()].to_string();
            let verdicts = verify(&message, |_| Ok(vec![record.clone()]));
            assert_eq!(verdicts.len(), 1);
        }
    }
}
