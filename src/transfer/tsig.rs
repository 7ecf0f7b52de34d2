//! TSIG (RFC 8945) for zone transfers and the messages we send: verifying a signed request,
//! the TSIG error answers (BADKEY, BADSIG, BADTIME), signing responses including the
//! multi-message chaining of a transfer (§5.3.1), and signing a request we send (NOTIFY,
//! UPDATE) and verifying its response.
//!
//! This module owns the byte-level MAC work on already encoded messages: the TSIG record is
//! appended to an encoded message and ARCOUNT bumped, so the message is encoded once. It
//! must not decide who may transfer what ([`super::acl`]) nor log per message, and never
//! logs or returns a secret.
//!
//! We rebuild hickory's `verify_message_byte` from its public parts rather than call it: it
//! computes `time - fudge` unchecked, which overflows (a panic in debug builds) on a request
//! signed at a time below its fudge, and its BADKEY/BADTIME helpers cannot echo the request's
//! algorithm nor carry our time in Other Data.

use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::tsig::{
    TSIG, TsigAlgorithm as WireAlgorithm, TsigError, make_tsig_record, signed_bitmessage_to_buf,
};
use hickory_proto::rr::{Name, Record, TSigner};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use super::TsigKey;
use crate::config::TsigAlgorithm;

/// Allowed difference between the signer's clock and ours, in seconds (RFC 8945 §10
/// recommends 300).
pub const FUDGE: u16 = 300;

/// Why a TSIG operation failed. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum TsigFailure {
    #[error("TSIG key {0:?} is not a valid domain name")]
    KeyName(String),
    #[error("the message does not carry a TSIG record")]
    Unsigned,
    #[error("malformed TSIG: {0}")]
    Malformed(String),
    #[error("signed with another key or algorithm")]
    WrongKey,
    #[error("the MAC does not verify")]
    BadSig,
    #[error("signed at {signed}, outside {fudge} s of our time {now}")]
    BadTime { signed: u64, fudge: u16, now: u64 },
    #[error("the peer answered with TSIG error {0:?}")]
    PeerError(TsigError),
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// Seconds since the epoch, as TSIG's Time Signed carries it.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A hickory signer for one of our keys.
pub fn signer(key: &TsigKey) -> Result<TSigner, TsigFailure> {
    let name = Name::from_ascii(&key.name).map_err(|_| TsigFailure::KeyName(key.name.clone()))?;
    let algorithm = match key.algorithm {
        TsigAlgorithm::HmacSha256 => WireAlgorithm::HmacSha256,
        TsigAlgorithm::HmacSha512 => WireAlgorithm::HmacSha512,
    };
    TSigner::new(key.secret.clone(), algorithm, name, FUDGE)
        .map_err(|e| TsigFailure::Sign(e.to_string()))
}

/// The keys a server accepts requests signed with, by name.
#[derive(Clone, Default)]
pub struct Keyring {
    signers: Vec<TSigner>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.signers.iter().map(|s| s.signer_name().to_string()))
            .finish()
    }
}

impl Keyring {
    pub fn new(keys: &[TsigKey]) -> Result<Self, TsigFailure> {
        Ok(Self {
            signers: keys.iter().map(signer).collect::<Result<_, _>>()?,
        })
    }

    /// The signer whose key is named `name` (case-insensitive, as DNS names compare).
    pub fn get(&self, name: &Name) -> Option<&TSigner> {
        self.signers.iter().find(|s| s.signer_name() == name)
    }
}

/// A request whose TSIG verified: what signing the responses needs.
#[derive(Clone)]
pub struct SignedRequest {
    signer: TSigner,
    request_mac: Vec<u8>,
}

impl SignedRequest {
    pub fn key_name(&self) -> &Name {
        self.signer.signer_name()
    }

    /// A signer for the response (or the messages of a transfer), chained to this request.
    pub fn response_signer(&self) -> ResponseSigner {
        ResponseSigner {
            signer: self.signer.clone(),
            previous_mac: self.request_mac.clone(),
            first: true,
        }
    }
}

/// A request whose TSIG did not pass: answer NOTAUTH with [`Rejection::finish`] and nothing
/// else (RFC 8945 §5.2).
#[derive(Clone)]
pub struct Rejection {
    pub error: TsigError,
    key_name: Name,
    algorithm: WireAlgorithm,
    request_time: u64,
    fudge: u16,
    /// BADTIME answers are signed (the MAC verified): the key and the request's MAC.
    signed: Option<(TSigner, Vec<u8>)>,
}

impl Rejection {
    /// The response code that goes with it (the TSIG error is in the TSIG record).
    pub fn rcode(&self) -> ResponseCode {
        ResponseCode::NotAuth
    }

    /// Appends the error TSIG to an encoded NOTAUTH response: unsigned for BADKEY and
    /// BADSIG, signed with our time in Other Data for BADTIME (RFC 8945 §5.2.3: Time Signed
    /// is the request's, so the client can check the MAC, and Other Data tells it our clock).
    pub fn finish(&self, response: &mut Vec<u8>) -> Result<(), TsigFailure> {
        let oid = message_id(response);
        match &self.signed {
            None => {
                let tsig = TSIG::new(
                    self.algorithm.clone(),
                    self.request_time,
                    self.fudge,
                    Vec::new(),
                    oid,
                    Some(self.error),
                    Vec::new(),
                );
                append_tsig(response, &self.key_name, tsig)
            }
            Some((signer, request_mac)) => {
                let ours = now();
                let mut other = Vec::with_capacity(6);
                other.extend_from_slice(&((ours >> 32) as u16).to_be_bytes());
                other.extend_from_slice(&(ours as u32).to_be_bytes());
                let stub = TSIG::new(
                    signer.algorithm().clone(),
                    self.request_time,
                    signer.fudge(),
                    Vec::new(),
                    oid,
                    Some(self.error),
                    other,
                );
                let tbs = tbs_first(signer, Some(request_mac), response, &stub)?;
                let mac = signer
                    .sign(&tbs)
                    .map_err(|e| TsigFailure::Sign(e.to_string()))?;
                append_tsig(response, signer.signer_name(), stub.set_mac(mac))
            }
        }
    }
}

/// What the TSIG of a request says.
pub enum Verdict {
    /// No TSIG record.
    Unsigned,
    Signed(SignedRequest),
    Rejected(Rejection),
}

/// Verifies the TSIG of a request (RFC 8945 §5.2): key, then MAC, then time. `request` is
/// the message as received, `parsed` its decoding. A TSIG that does not parse gives `Err`
/// (answer FORMERR).
pub fn verify_request(
    keys: &Keyring,
    request: &[u8],
    parsed: &Message,
    now: u64,
) -> Result<Verdict, TsigFailure> {
    if parsed.signature.is_none() {
        return Ok(Verdict::Unsigned);
    }
    let (tbv, record) = signed_bitmessage_to_buf(request, None, true)
        .map_err(|e| TsigFailure::Malformed(e.to_string()))?;
    let tsig = &record.data;
    let reject = |error, signed| Rejection {
        error,
        key_name: record.name.clone(),
        algorithm: tsig.algorithm.clone(),
        request_time: tsig.time,
        fudge: tsig.fudge,
        signed,
    };
    let Some(signer) = keys
        .get(&record.name)
        .filter(|s| *s.algorithm() == tsig.algorithm)
    else {
        return Ok(Verdict::Rejected(reject(TsigError::BadKey, None)));
    };
    // Truncated MACs (RFC 8945 §5.2.2.1) are not accepted: they are BADSIG here.
    if tsig.mac.len() != mac_len(signer.algorithm()) || signer.verify(&tbv, &tsig.mac).is_err() {
        return Ok(Verdict::Rejected(reject(TsigError::BadSig, None)));
    }
    if !in_window(tsig.time, tsig.fudge, now) {
        return Ok(Verdict::Rejected(reject(
            TsigError::BadTime,
            Some((signer.clone(), tsig.mac.clone())),
        )));
    }
    Ok(Verdict::Signed(SignedRequest {
        signer: signer.clone(),
        request_mac: tsig.mac.clone(),
    }))
}

/// Signs the messages answering one signed request: the first digests the request's MAC,
/// the message and the full TSIG variables; each later one the previous MAC, the message
/// and the timers only (RFC 8945 §5.3.1). Every message is signed.
pub struct ResponseSigner {
    signer: TSigner,
    previous_mac: Vec<u8>,
    first: bool,
}

impl ResponseSigner {
    /// Appends the TSIG to the encoded message `message` (its ID is the original ID).
    pub fn sign(&mut self, message: &mut Vec<u8>, now: u64) -> Result<(), TsigFailure> {
        let stub = TSIG::new(
            self.signer.algorithm().clone(),
            now,
            self.signer.fudge(),
            Vec::new(),
            message_id(message),
            None,
            Vec::new(),
        );
        let tbs = if self.first {
            tbs_first(&self.signer, Some(&self.previous_mac), message, &stub)?
        } else {
            let mut tbs = Vec::with_capacity(2 + self.previous_mac.len() + message.len() + 8);
            tbs.extend_from_slice(&(self.previous_mac.len() as u16).to_be_bytes());
            tbs.extend_from_slice(&self.previous_mac);
            tbs.extend_from_slice(message);
            tbs.extend_from_slice(&((now >> 32) as u16).to_be_bytes());
            tbs.extend_from_slice(&(now as u32).to_be_bytes());
            tbs.extend_from_slice(&self.signer.fudge().to_be_bytes());
            tbs
        };
        let mac = self
            .signer
            .sign(&tbs)
            .map_err(|e| TsigFailure::Sign(e.to_string()))?;
        self.previous_mac = mac.clone();
        self.first = false;
        append_tsig(message, self.signer.signer_name(), stub.set_mac(mac))
    }
}

/// Signs an encoded request we send (NOTIFY, UPDATE, a transfer request); returns its MAC,
/// which [`verify_response`] needs.
pub fn sign_request(
    signer: &TSigner,
    message: &mut Vec<u8>,
    now: u64,
) -> Result<Vec<u8>, TsigFailure> {
    let stub = TSIG::new(
        signer.algorithm().clone(),
        now,
        signer.fudge(),
        Vec::new(),
        message_id(message),
        None,
        Vec::new(),
    );
    let tbs = tbs_first(signer, None, message, &stub)?;
    let mac = signer
        .sign(&tbs)
        .map_err(|e| TsigFailure::Sign(e.to_string()))?;
    append_tsig(message, signer.signer_name(), stub.set_mac(mac.clone()))?;
    Ok(mac)
}

/// Verifies the TSIG of the (single-message) response to a request we signed, whose MAC
/// was `request_mac`. An unsigned error TSIG from the peer (BADKEY, BADSIG) is
/// [`TsigFailure::PeerError`].
pub fn verify_response(
    signer: &TSigner,
    request_mac: &[u8],
    response: &[u8],
    now: u64,
) -> Result<(), TsigFailure> {
    if !has_tsig(response) {
        return Err(TsigFailure::Unsigned);
    }
    let (tbv, record) = signed_bitmessage_to_buf(response, Some(request_mac), true)
        .map_err(|e| TsigFailure::Malformed(e.to_string()))?;
    let tsig = &record.data;
    if record.name != *signer.signer_name() || tsig.algorithm != *signer.algorithm() {
        return Err(TsigFailure::WrongKey);
    }
    if tsig.mac.is_empty()
        && let Some(error) = tsig.error
    {
        return Err(TsigFailure::PeerError(error));
    }
    if tsig.mac.len() != mac_len(signer.algorithm()) || signer.verify(&tbv, &tsig.mac).is_err() {
        return Err(TsigFailure::BadSig);
    }
    if let Some(error) = tsig.error {
        return Err(TsigFailure::PeerError(error));
    }
    if !in_window(tsig.time, tsig.fudge, now) {
        return Err(TsigFailure::BadTime {
            signed: tsig.time,
            fudge: tsig.fudge,
            now,
        });
    }
    Ok(())
}

/// `now` within `time ± fudge`, without overflowing on any value a peer sends.
fn in_window(time: u64, fudge: u16, now: u64) -> bool {
    time.abs_diff(now) <= u64::from(fudge)
}

fn mac_len(algorithm: &WireAlgorithm) -> usize {
    match algorithm {
        WireAlgorithm::HmacSha384 => 48,
        WireAlgorithm::HmacSha512 => 64,
        _ => 32,
    }
}

fn message_id(message: &[u8]) -> u16 {
    match message {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

/// True when the message carries a TSIG record (a message that does not decode is left to
/// the TSIG parser, which says what is wrong).
fn has_tsig(message: &[u8]) -> bool {
    match Message::from_vec(message) {
        Ok(m) => m.signature.is_some(),
        // Let the TSIG parser report what is wrong when there is an additional record.
        Err(_) => message.get(10..12).is_some_and(|c| c != [0, 0]),
    }
}

/// Request MAC (when answering) + message + full TSIG variables: the first message's TBS.
fn tbs_first(
    signer: &TSigner,
    previous_mac: Option<&[u8]>,
    message: &[u8],
    stub: &TSIG,
) -> Result<Vec<u8>, TsigFailure> {
    let mut tbs = Vec::with_capacity(message.len() + 128);
    if let Some(mac) = previous_mac {
        tbs.extend_from_slice(&(mac.len() as u16).to_be_bytes());
        tbs.extend_from_slice(mac);
    }
    tbs.extend_from_slice(message);
    let mut vars = Vec::with_capacity(128);
    let mut encoder = BinEncoder::new(&mut vars);
    stub.emit_tsig_for_mac(&mut encoder, signer.signer_name())
        .map_err(|e| TsigFailure::Sign(e.to_string()))?;
    tbs.extend_from_slice(&vars);
    Ok(tbs)
}

/// Appends a TSIG record to an encoded message and counts it in ARCOUNT. Its names are
/// written uncompressed: compression pointers would have to point into the message, which
/// this separate encoder does not know.
fn append_tsig(message: &mut Vec<u8>, key_name: &Name, tsig: TSIG) -> Result<(), TsigFailure> {
    if message.len() < 12 {
        return Err(TsigFailure::Sign("message shorter than a header".into()));
    }
    let arcount = u16::from_be_bytes([message[10], message[11]])
        .checked_add(1)
        .ok_or_else(|| TsigFailure::Sign("too many additional records".into()))?;
    let record: Record<TSIG> = make_tsig_record(key_name.clone(), tsig);
    let mut tail = Vec::with_capacity(128);
    let mut encoder = BinEncoder::new(&mut tail);
    {
        let mut encoder = encoder.with_name_encoding(NameEncoding::Uncompressed);
        record
            .emit(&mut encoder)
            .map_err(|e| TsigFailure::Sign(e.to_string()))?;
    }
    message.extend_from_slice(&tail);
    message[10..12].copy_from_slice(&arcount.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::RecordType;

    fn key(name: &str, secret: &[u8]) -> TsigKey {
        TsigKey {
            name: name.into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: secret.to_vec(),
        }
    }

    fn axfr_request() -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("example.test.").unwrap(),
            RecordType::AXFR,
        ));
        m.to_vec().unwrap()
    }

    #[test]
    fn a_request_we_sign_verifies_and_its_chained_responses_verify_with_hickory() {
        let k = key("k1", &[7u8; 32]);
        let s = signer(&k).unwrap();
        let keys = Keyring::new(&[k]).unwrap();
        let mut request = axfr_request();
        let t = now();
        let request_mac = sign_request(&s, &mut request, t).unwrap();
        let Verdict::Signed(signed) =
            verify_request(&keys, &request, &Message::from_vec(&request).unwrap(), t).unwrap()
        else {
            panic!("not verified");
        };
        let mut rs = signed.response_signer();
        let mut previous = request_mac;
        for i in 0..3 {
            let mut m = Message::new(0x1234, MessageType::Response, OpCode::Query);
            m.metadata.authoritative = true;
            let mut bytes = m.to_vec().unwrap();
            rs.sign(&mut bytes, t).unwrap();
            let (mac, _, _) = s
                .verify_message_byte(&bytes, Some(&previous), i == 0)
                .unwrap();
            previous = mac;
        }
    }

    #[test]
    fn a_wrong_secret_is_badsig_and_an_unknown_key_badkey_and_old_time_badtime() {
        let ours = Keyring::new(&[key("k1", &[7u8; 32])]).unwrap();
        let t = now();
        let mut wrong = axfr_request();
        sign_request(&signer(&key("k1", &[8u8; 32])).unwrap(), &mut wrong, t).unwrap();
        let mut unknown = axfr_request();
        sign_request(&signer(&key("k2", &[7u8; 32])).unwrap(), &mut unknown, t).unwrap();
        let mut old = axfr_request();
        sign_request(&signer(&key("k1", &[7u8; 32])).unwrap(), &mut old, 5).unwrap();
        for (bytes, error) in [
            (wrong, TsigError::BadSig),
            (unknown, TsigError::BadKey),
            (old, TsigError::BadTime),
        ] {
            match verify_request(&ours, &bytes, &Message::from_vec(&bytes).unwrap(), t).unwrap() {
                Verdict::Rejected(r) => {
                    assert_eq!(r.error, error);
                    let mut answer = Message::new(0x1234, MessageType::Response, OpCode::Query);
                    answer.metadata.response_code = ResponseCode::NotAuth;
                    let mut a = answer.to_vec().unwrap();
                    r.finish(&mut a).unwrap();
                    let parsed = Message::from_vec(&a).unwrap();
                    assert_eq!(parsed.signature.unwrap().data.error, Some(error));
                }
                _ => panic!("accepted"),
            }
        }
    }

    #[test]
    fn an_unsigned_request_is_unsigned() {
        let keys = Keyring::new(&[key("k1", &[7u8; 32])]).unwrap();
        assert!(matches!(
            verify_request(
                &keys,
                &axfr_request(),
                &Message::from_vec(&axfr_request()).unwrap(),
                now()
            )
            .unwrap(),
            Verdict::Unsigned
        ));
    }
}
