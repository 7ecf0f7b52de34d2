//! Reading RFC 1035 master files.
//!
//! This module owns turning zone-file text into records, each tagged with the line it came
//! from, so that every error says `file:line: reason`. It does not judge the zone as a whole
//! (SOA, CNAME exclusivity, …): that is [`super::Zone::build`]'s job.
//!
//! We lex the text ourselves rather than use hickory's `Parser` because that parser reports
//! no line numbers, decodes `\DDD` escapes wrongly, mis-reads quoted strings inside
//! parentheses (the usual DKIM layout) and follows `$INCLUDE` anywhere on disk
//! (`../shared/HICKORY-NOTES.md` §2, §11). The common record types are built here directly;
//! rarer ones are handed, one record at a time, to hickory's parser.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_proto::serialize::txt::{Parser, parse_ttl};

/// The longest TTL we accept (RFC 2181 §8: 2^31 - 1).
pub const MAX_TTL: u32 = 0x7FFF_FFFF;

/// A record and the line of the master file it was read from.
#[derive(Debug, Clone)]
pub struct SourcedRecord {
    pub record: Record,
    pub line: usize,
}

/// A master-file error: the line (1-based) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct MasterFileError {
    pub line: usize,
    pub message: String,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, MasterFileError> {
    Err(MasterFileError {
        line,
        message: message.into(),
    })
}

/// One lexical token of a master file, borrowed from the text where it can be: a zone's
/// hundred tokens are not a hundred allocations (100,000 zones are read at every start).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'t> {
    /// An unquoted word, kept as written (escapes are left for the name parser).
    Word(&'t str),
    /// A quoted string, escapes decoded (owned only when it had an escape).
    Quoted(Cow<'t, [u8]>),
}

/// One logical entry: a line, with parenthesised continuations folded in. Its tokens are
/// `tokens` of [`Lexed`], every entry's after the other.
#[derive(Debug)]
struct Entry {
    line: usize,
    /// The line started with white space: the owner is the previous one.
    inherits_owner: bool,
    tokens: std::ops::Range<usize>,
}

/// The entries of a text and their tokens, in one list.
#[derive(Debug)]
struct Lexed<'t> {
    entries: Vec<Entry>,
    tokens: Vec<Token<'t>>,
}

impl<'t> Lexed<'t> {
    fn tokens(&self, entry: &Entry) -> &[Token<'t>] {
        &self.tokens[entry.tokens.clone()]
    }
}

/// Splits master-file text into logical entries.
fn lex(text: &str) -> Result<Lexed<'_>, MasterFileError> {
    let bytes = text.as_bytes();
    let mut entries = Vec::new();
    let mut tokens: Vec<Token<'_>> = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let mut depth = 0usize;
    let mut paren_line = 0;
    let mut current: Option<Entry> = None;
    let mut at_line_start = true;

    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => {
                if depth == 0
                    && let Some(mut e) = current.take()
                {
                    e.tokens.end = tokens.len();
                    entries.push(e);
                }
                line += 1;
                i += 1;
                at_line_start = true;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                // A line that starts with blank space inherits the previous owner.
                if at_line_start && depth == 0 && current.is_none() {
                    current = Some(Entry {
                        line,
                        inherits_owner: true,
                        tokens: tokens.len()..tokens.len(),
                    });
                }
                at_line_start = false;
                continue;
            }
            b';' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        at_line_start = false;
        if current.is_none() {
            current = Some(Entry {
                line,
                inherits_owner: false,
                tokens: tokens.len()..tokens.len(),
            });
        }
        match c {
            b'(' => {
                if depth == 0 {
                    paren_line = line;
                }
                depth += 1;
                i += 1;
            }
            b')' => {
                if depth == 0 {
                    return err(line, "')' without a matching '('");
                }
                depth -= 1;
                i += 1;
            }
            b'"' => {
                let start_line = line;
                i += 1;
                let start = i;
                // Copied only from the first escape on.
                let mut out: Option<Vec<u8>> = None;
                let end = loop {
                    if out.is_none() {
                        // Plain bytes (nearly all of a DKIM key) are skipped in one go.
                        while let Some(&b) = bytes.get(i)
                            && !matches!(b, b'"' | b'\\' | b'\n')
                        {
                            i += 1;
                        }
                    }
                    let Some(&b) = bytes.get(i) else {
                        return err(start_line, "quoted string is not closed");
                    };
                    match b {
                        b'"' => {
                            i += 1;
                            break i - 1;
                        }
                        b'\\' => {
                            let (byte, used) =
                                unescape(&bytes[i + 1..]).ok_or_else(|| MasterFileError {
                                    line,
                                    message: "bad escape sequence in quoted string".into(),
                                })?;
                            out.get_or_insert_with(|| bytes[start..i].to_vec())
                                .push(byte);
                            i += 1 + used;
                        }
                        _ => {
                            if b == b'\n' {
                                // RFC 1035 lets a quoted string span lines; the newline is
                                // data.
                                line += 1;
                            }
                            if let Some(out) = &mut out {
                                out.push(b);
                            }
                            i += 1;
                        }
                    }
                };
                tokens.push(Token::Quoted(match out {
                    Some(out) => Cow::Owned(out),
                    None => Cow::Borrowed(&bytes[start..end]),
                }));
            }
            _ => {
                let start = i;
                while i < bytes.len() {
                    match bytes[i] {
                        b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
                let i_end = i.min(bytes.len());
                let word = text.get(start..i_end).ok_or_else(|| MasterFileError {
                    line,
                    message: "invalid UTF-8".into(),
                })?;
                i = i_end;
                tokens.push(Token::Word(word));
            }
        }
    }
    if depth > 0 {
        return err(paren_line, "'(' is never closed");
    }
    if let Some(mut e) = current.take() {
        e.tokens.end = tokens.len();
        entries.push(e);
    }
    entries.retain(|e| !e.tokens.is_empty());
    Ok(Lexed { entries, tokens })
}

/// Decodes the escape after a backslash: `\DDD` (decimal) or `\X`. Returns the byte and how
/// many input bytes it used.
fn unescape(rest: &[u8]) -> Option<(u8, usize)> {
    let first = *rest.first()?;
    if first.is_ascii_digit() {
        let digits = rest.get(..3)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let value = digits
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
        return u8::try_from(value).ok().map(|b| (b, 3));
    }
    Some((first, 1))
}

/// Reads master-file text. `origin` is the zone's name; `$ORIGIN` may change it for the
/// lines that follow.
pub fn read(text: &str, origin: &Name) -> Result<Vec<SourcedRecord>, MasterFileError> {
    let mut origin = origin.clone();
    let mut default_ttl: Option<u32> = None;
    let mut last_ttl: Option<u32> = None;
    let lexed = lex(text)?;
    let mut records: Vec<SourcedRecord> = Vec::with_capacity(lexed.entries.len());

    for entry in &lexed.entries {
        let line = entry.line;
        let all = lexed.tokens(entry);
        // Directives.
        if !entry.inherits_owner
            && let Some(Token::Word(w)) = all.first()
            && w.starts_with('$')
        {
            let directive = w.to_ascii_uppercase();
            let args = &all[1..];
            match directive.as_str() {
                "$ORIGIN" => {
                    let [Token::Word(name)] = args else {
                        return err(line, "$ORIGIN takes exactly one domain name");
                    };
                    origin = parse_name(name, &origin, line)?;
                }
                "$TTL" => {
                    let [Token::Word(ttl)] = args else {
                        return err(line, "$TTL takes exactly one TTL");
                    };
                    default_ttl = Some(parse_ttl_value(ttl, line)?);
                }
                "$INCLUDE" => {
                    return err(
                        line,
                        "$INCLUDE is not supported: a zone must be one file in the zones folder",
                    );
                }
                other => {
                    return err(
                        line,
                        format!("unknown directive {}", excerpt(other.as_bytes())),
                    );
                }
            }
            continue;
        }

        let mut tokens = all.iter();
        let owner = if entry.inherits_owner {
            // The previous record's owner (directives do not change it).
            match records.last() {
                Some(r) => r.record.name.clone(),
                None => return err(line, "the first record has no owner name"),
            }
        } else {
            match tokens.next() {
                Some(Token::Word(w)) => parse_name(w, &origin, line)?,
                _ => return err(line, "expected an owner name"),
            }
        };

        // [TTL] [CLASS] TYPE or [CLASS] [TTL] TYPE
        let mut ttl: Option<u32> = None;
        let mut rtype: Option<RecordType> = None;
        let mut class_seen = false;
        while rtype.is_none() {
            let Some(tok) = tokens.next() else {
                return err(line, "expected a record type");
            };
            let Token::Word(w) = tok else {
                return err(
                    line,
                    "expected a TTL, class or record type, found a quoted string",
                );
            };
            if ttl.is_none() && w.as_bytes()[0].is_ascii_digit() {
                ttl = Some(parse_ttl_value(w, line)?);
            } else if !class_seen && is_class(w) {
                if !w.eq_ignore_ascii_case("IN") {
                    return err(
                        line,
                        format!("class {} is not supported: only IN", excerpt(w.as_bytes())),
                    );
                }
                class_seen = true;
            } else {
                rtype = Some(parse_type(w, line)?);
            }
        }
        let Some(rtype) = rtype else {
            return err(line, "expected a record type");
        };
        let rdata = parse_rdata(rtype, tokens.as_slice(), &origin, line)?;

        let ttl = match ttl.or(default_ttl).or(last_ttl) {
            Some(t) => t,
            // RFC 2308: without $TTL, the SOA's MINIMUM is the classic default.
            None => match &rdata {
                RData::SOA(soa) => soa.minimum.min(MAX_TTL),
                _ => return err(line, "no TTL given and no $TTL before this record"),
            },
        };
        last_ttl = Some(ttl);
        records.push(SourcedRecord {
            record: Record::from_rdata(owner, ttl, rdata),
            line,
        });
    }
    Ok(records)
}

fn is_class(w: &str) -> bool {
    ["IN", "CH", "CS", "HS", "ANY", "NONE"]
        .iter()
        .any(|c| w.eq_ignore_ascii_case(c))
}

/// The types nearly every zone is made of, looked up without an upper-cased copy.
const COMMON_TYPES: [(&str, RecordType); 9] = [
    ("A", RecordType::A),
    ("AAAA", RecordType::AAAA),
    ("CNAME", RecordType::CNAME),
    ("MX", RecordType::MX),
    ("NS", RecordType::NS),
    ("PTR", RecordType::PTR),
    ("SOA", RecordType::SOA),
    ("SRV", RecordType::SRV),
    ("TXT", RecordType::TXT),
];

fn parse_type(w: &str, line: usize) -> Result<RecordType, MasterFileError> {
    if let Some((_, t)) = COMMON_TYPES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(w))
    {
        return Ok(*t);
    }
    let upper = w.to_ascii_uppercase();
    match RecordType::from_str(&upper) {
        Ok(RecordType::Unknown(_)) | Err(_) => err(
            line,
            format!("unknown record type {}", excerpt(w.as_bytes())),
        ),
        Ok(t) => Ok(t),
    }
}

fn parse_ttl_value(w: &str, line: usize) -> Result<u32, MasterFileError> {
    match parse_ttl(w) {
        Ok(t) if t <= MAX_TTL => Ok(t),
        Ok(t) => err(line, format!("TTL {t} is larger than {MAX_TTL}")),
        Err(_) => err(line, format!("invalid TTL {}", excerpt(w.as_bytes()))),
    }
}

/// Parses a domain name as written in a master file: `@`, relative or absolute.
pub fn parse_name(w: &str, origin: &Name, line: usize) -> Result<Name, MasterFileError> {
    if w == "@" {
        return Ok(origin.clone());
    }
    let fail = |why: &str| MasterFileError {
        line,
        message: format!("invalid domain name {}: {why}", excerpt(w.as_bytes())),
    };
    let absolute = check_name_text(w.as_bytes()).map_err(|why| fail(&why))?;
    // The name is written in wire form and decoded once: a `Name` grown label by label
    // was a tenth of reading 100,000 zones. The limits are checked as hickory's
    // `append_label` and `append_domain` check them, in the same order.
    let mut wire = [0u8; Name::MAX_LENGTH + 1];
    // The length a `Name` of the labels so far would have (the root's is 1).
    let mut encoded = 1usize;
    for_each_label(w.as_bytes(), |label| {
        if label.len() > 63 {
            return Err(fail("a label is over 63 bytes"));
        }
        if encoded + label.len() + 1 > Name::MAX_LENGTH {
            return Err(fail("the name is over 255 bytes"));
        }
        wire[encoded - 1] = label.len() as u8;
        wire[encoded..encoded + label.len()].copy_from_slice(label);
        encoded += label.len() + 1;
        Ok(())
    })?;
    if !absolute {
        for label in origin.iter() {
            if encoded + label.len() + 1 > Name::MAX_LENGTH {
                return Err(fail(
                    "the name is over 255 bytes once the origin is appended",
                ));
            }
            wire[encoded - 1] = label.len() as u8;
            wire[encoded..encoded + label.len()].copy_from_slice(label);
            encoded += label.len() + 1;
        }
    }
    // The root label ends it (already 0).
    Name::read(&mut BinDecoder::new(&wire[..encoded]))
        .map_err(|_| fail("the name is over 255 bytes"))
}

/// Checks a name in presentation form (RFC 1035 §5.1: `\X` is the byte X, `\DDD` a
/// decimal byte) and says whether it ends with an unescaped dot; [`for_each_label`] then
/// gives its labels. We decode escapes ourselves: hickory's `Name::from_ascii` reads
/// `\DDD` as octal and refuses most escaped bytes.
fn check_name_text(w: &[u8]) -> Result<bool, String> {
    if w == b"." {
        return Ok(true);
    }
    let mut label_len = 0usize;
    let mut i = 0;
    let mut absolute = false;
    while i < w.len() {
        absolute = false;
        match w[i] {
            b'\\' => {
                let (byte, used) =
                    unescape(&w[i + 1..]).ok_or_else(|| "bad escape sequence".to_string())?;
                if !byte.is_ascii() && used == 1 {
                    return Err(non_ascii_name());
                }
                label_len += 1;
                i += 1 + used;
            }
            b'.' => {
                if label_len == 0 {
                    return Err("empty label".into());
                }
                label_len = 0;
                absolute = true;
                i += 1;
            }
            b if !b.is_ascii() => return Err(non_ascii_name()),
            _ => {
                label_len += 1;
                i += 1;
            }
        }
    }
    if label_len == 0 && !absolute {
        return Err("empty name".into());
    }
    Ok(absolute)
}

/// Calls `f` with each label of a name [`check_name_text`] accepted, escapes decoded; the
/// first error `f` returns stops the walk.
fn for_each_label<E>(w: &[u8], mut f: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
    if w == b"." {
        return Ok(());
    }
    let mut label: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    // Labels without escapes are passed as they are written, not copied.
    let mut escaped = false;
    while i < w.len() {
        match w[i] {
            b'\\' => {
                if !escaped {
                    label.clear();
                    label.extend_from_slice(&w[start..i]);
                    escaped = true;
                }
                let (byte, used) = unescape(&w[i + 1..]).unwrap_or((w[i], 0));
                label.push(byte);
                i += 1 + used;
            }
            b'.' => {
                if escaped {
                    f(&label)?;
                } else {
                    f(&w[start..i])?;
                }
                escaped = false;
                i += 1;
                start = i;
            }
            b => {
                if escaped {
                    label.push(b);
                }
                i += 1;
            }
        }
    }
    if escaped {
        f(&label)?;
    } else if start < w.len() {
        f(&w[start..])?;
    }
    Ok(())
}

fn non_ascii_name() -> String {
    "non-ASCII character: write internationalised names as A-labels (xn--...)".into()
}

/// At most 80 characters of `bytes`, non-printable bytes escaped, for quoting input in an
/// error message: whatever a file or a request holds, the message stays short and one line.
pub fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 80;
    let mut s = String::new();
    for &b in bytes {
        if s.len() >= MAX {
            s.push_str("...");
            break;
        }
        match b {
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = std::fmt::Write::write_fmt(&mut s, format_args!("\\{b:03}"));
            }
        }
    }
    s
}

fn word<'t>(
    tokens: &'t [Token],
    i: usize,
    what: &str,
    line: usize,
) -> Result<&'t str, MasterFileError> {
    match tokens.get(i) {
        Some(Token::Word(w)) => Ok(w),
        Some(Token::Quoted(_)) => err(line, format!("{what}: unexpected quoted string")),
        None => err(line, format!("missing {what}")),
    }
}

fn number<T: FromStr>(
    tokens: &[Token],
    i: usize,
    what: &str,
    line: usize,
) -> Result<T, MasterFileError> {
    let w = word(tokens, i, what, line)?;
    w.parse()
        .or_else(|_| err(line, format!("invalid {what}: {}", excerpt(w.as_bytes()))))
}

fn exact_count(
    tokens: &[Token],
    n: usize,
    rtype: RecordType,
    line: usize,
) -> Result<(), MasterFileError> {
    if tokens.len() != n {
        return err(
            line,
            format!("{rtype} takes {n} field(s), found {}", tokens.len()),
        );
    }
    Ok(())
}

fn parse_rdata(
    rtype: RecordType,
    t: &[Token],
    origin: &Name,
    line: usize,
) -> Result<RData, MasterFileError> {
    let name_at = |i: usize, what: &str| -> Result<Name, MasterFileError> {
        parse_name(word(t, i, what, line)?, origin, line)
    };
    Ok(match rtype {
        RecordType::A => {
            exact_count(t, 1, rtype, line)?;
            let w = word(t, 0, "IPv4 address", line)?;
            RData::A(A(Ipv4Addr::from_str(w).or_else(|_| {
                err(
                    line,
                    format!("invalid IPv4 address {}", excerpt(w.as_bytes())),
                )
            })?))
        }
        RecordType::AAAA => {
            exact_count(t, 1, rtype, line)?;
            let w = word(t, 0, "IPv6 address", line)?;
            RData::AAAA(AAAA(Ipv6Addr::from_str(w).or_else(|_| {
                err(
                    line,
                    format!("invalid IPv6 address {}", excerpt(w.as_bytes())),
                )
            })?))
        }
        RecordType::NS => {
            exact_count(t, 1, rtype, line)?;
            RData::NS(NS(name_at(0, "name server")?))
        }
        RecordType::CNAME => {
            exact_count(t, 1, rtype, line)?;
            RData::CNAME(CNAME(name_at(0, "canonical name")?))
        }
        RecordType::PTR => {
            exact_count(t, 1, rtype, line)?;
            RData::PTR(PTR(name_at(0, "pointer target")?))
        }
        RecordType::MX => {
            exact_count(t, 2, rtype, line)?;
            RData::MX(MX::new(
                number(t, 0, "MX preference", line)?,
                name_at(1, "mail exchange")?,
            ))
        }
        RecordType::SRV => {
            exact_count(t, 4, rtype, line)?;
            RData::SRV(SRV::new(
                number(t, 0, "SRV priority", line)?,
                number(t, 1, "SRV weight", line)?,
                number(t, 2, "SRV port", line)?,
                name_at(3, "SRV target")?,
            ))
        }
        RecordType::TXT => {
            if t.is_empty() {
                return err(line, "TXT needs at least one string");
            }
            let mut strings: Vec<Cow<'_, [u8]>> = Vec::with_capacity(t.len());
            for tok in t {
                let bytes = match tok {
                    Token::Quoted(b) => Cow::Borrowed(b.as_ref()),
                    Token::Word(w) => {
                        Cow::Owned(unescape_word(w).ok_or_else(|| MasterFileError {
                            line,
                            message: format!("bad escape sequence in {}", excerpt(w.as_bytes())),
                        })?)
                    }
                };
                if bytes.len() > 255 {
                    return err(
                        line,
                        format!(
                            "TXT string of {} bytes: each string is at most 255 bytes, split it into several quoted strings",
                            bytes.len()
                        ),
                    );
                }
                strings.push(bytes);
            }
            RData::TXT(TXT::from_bytes(strings.iter().map(AsRef::as_ref).collect()))
        }
        RecordType::SOA => {
            exact_count(t, 7, rtype, line)?;
            let timer = |i: usize, what: &str| -> Result<i32, MasterFileError> {
                let w = word(t, i, what, line)?;
                let v = parse_ttl_value(w, line)?;
                i32::try_from(v).or_else(|_| {
                    err(
                        line,
                        format!("{what} {} is too large", excerpt(w.as_bytes())),
                    )
                })
            };
            let serial: u32 = number(t, 2, "SOA serial", line)?;
            RData::SOA(SOA::new(
                name_at(0, "SOA primary name server")?,
                name_at(1, "SOA responsible mailbox")?,
                serial,
                timer(3, "SOA refresh")?,
                timer(4, "SOA retry")?,
                timer(5, "SOA expire")?,
                timer(6, "SOA minimum")? as u32,
            ))
        }
        _ => {
            let data = parse_with_hickory(rtype, t, origin, line)?;
            check_writable(&data).map_err(|message| MasterFileError { line, message })?;
            data
        }
    })
}

/// Decodes escapes in an unquoted TXT word.
fn unescape_word(w: &str) -> Option<Vec<u8>> {
    let b = w.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let (byte, used) = unescape(&b[i + 1..])?;
            out.push(byte);
            i += 1 + used;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// For the record types we do not build ourselves (CAA, TLSA, SSHFP, DS, HTTPS, NAPTR, …):
/// rebuild the single record as text and let hickory's parser read it.
fn parse_with_hickory(
    rtype: RecordType,
    tokens: &[Token],
    origin: &Name,
    line: usize,
) -> Result<RData, MasterFileError> {
    // The owner does not matter; relative names in the data are relative to `$ORIGIN`.
    let mut text = format!("@ 0 IN {rtype}");
    for tok in tokens {
        text.push(' ');
        match tok {
            Token::Word(w) => text.push_str(w),
            Token::Quoted(bytes) => {
                // hickory mis-decodes \DDD, so only printable ASCII can be passed through.
                if bytes.iter().any(|b| !(0x20..0x7f).contains(b)) {
                    return err(
                        line,
                        format!(
                            "{rtype}: non-printable bytes in a quoted string are not supported"
                        ),
                    );
                }
                text.push('"');
                for &b in bytes.iter() {
                    if b == b'"' || b == b'\\' {
                        text.push('\\');
                    }
                    text.push(b as char);
                }
                text.push('"');
            }
        }
    }
    text.push('\n');
    let parsed = Parser::new(text, None, Some(origin.clone())).parse();
    let (_, sets) = parsed.map_err(|e| MasterFileError {
        line,
        message: format!(
            "invalid {rtype} record: {}",
            excerpt(e.to_string().as_bytes())
        ),
    })?;
    sets.into_values()
        .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>())
        .find(|r| r.record_type() == rtype && r.dns_class == DNSClass::IN)
        .map(|r| r.data)
        .ok_or_else(|| MasterFileError {
            line,
            message: format!("invalid {rtype} record"),
        })
}

/// Checks that record data of a type hickory parses for us comes back identical (same wire
/// bytes, case included) from the text we would write for it; what cannot is refused at
/// input rather than changed or lost at the next restart.
fn check_writable(data: &RData) -> Result<(), String> {
    let rtype = data.record_type();
    let text = super::writer::rdata_text(data);
    let refused =
        || format!("this {rtype} record cannot be written back identically in a zone file");
    if !text.is_ascii() {
        return Err(refused());
    }
    let text = format!("@ {text}");
    let lexed = match lex(&text) {
        Ok(lexed) if lexed.entries.len() == 1 => lexed,
        _ => return Err(refused()),
    };
    let tokens = &lexed.tokens(&lexed.entries[0])[1..];
    match parse_with_hickory(rtype, tokens, &Name::root(), 0) {
        Ok(again) if wire_bytes(&again) == wire_bytes(data) => Ok(()),
        _ => Err(refused()),
    }
}

/// The record data as sent on the wire (names uncompressed, case kept), or `None` when it
/// cannot be encoded at all.
pub fn wire_bytes(data: &RData) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut encoder = BinEncoder::new(&mut buf);
    data.emit(&mut encoder).ok()?;
    Some(buf)
}

/// Parses record data written in presentation format, as in a zone file (`10 mx1` for MX,
/// quoted strings for TXT). A TXT value that does not start with a quote is taken as one
/// raw text and split into 255-byte strings, which is what a DKIM key or SPF record needs.
pub fn parse_rdata_text(rtype: RecordType, text: &str, origin: &Name) -> Result<RData, String> {
    if rtype == RecordType::TXT && !text.trim_start().starts_with('"') {
        if text.is_empty() {
            return Err("TXT data is empty".into());
        }
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
        return Ok(RData::TXT(TXT::from_bytes(chunks)));
    }
    if text.contains('\n') || has_comment(text) {
        return Err("record data must be one line without comments".into());
    }
    let text = format!("@ {text}");
    let lexed = lex(&text).map_err(|e| e.message)?;
    let [entry] = lexed.entries.as_slice() else {
        return Err("record data must be one line".into());
    };
    let tokens = &lexed.tokens(entry)[1..];
    parse_rdata(rtype, tokens, origin, 1).map_err(|e| e.message)
}

/// Whether a record that arrived on the wire (an RFC 2136 UPDATE) can be stored: a type
/// that may be stored, an owner and data that come back byte for byte from the zone file
/// we write. What cannot is refused rather than changed or lost at the next restart.
pub fn storable(owner: &Name, data: &RData) -> Result<(), String> {
    let rtype = data.record_type();
    parse_record_type(&rtype.to_string())?;
    let shown = super::writer::name_text(owner);
    let again = parse_name(&shown, &Name::root(), 0).map_err(|e| e.message)?;
    if !again.iter().eq(owner.iter()) {
        return Err(format!(
            "the name {shown} cannot be written back identically"
        ));
    }
    let text = super::writer::rdata_text(data);
    let refused =
        || format!("this {rtype} record cannot be written back identically in a zone file");
    match parse_rdata_text(rtype, &text, &Name::root()) {
        Ok(again) if wire_bytes(&again).is_some() && wire_bytes(&again) == wire_bytes(data) => {
            Ok(())
        }
        _ => Err(refused()),
    }
}

/// Whether the text holds a `;` that starts a comment: one neither escaped nor quoted.
fn has_comment(text: &str) -> bool {
    let mut quoted = false;
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => {
                bytes.next();
            }
            b'"' => quoted = !quoted,
            b';' if !quoted => return true,
            _ => {}
        }
    }
    false
}

/// Parses a record type name for the API: known, and not one that mailzone manages itself.
pub fn parse_record_type(text: &str) -> Result<RecordType, String> {
    let t = parse_type(text, 0).map_err(|e| e.message)?;
    match t {
        RecordType::SOA => Err("the SOA record is managed by mailzone".into()),
        RecordType::ANY
        | RecordType::AXFR
        | RecordType::IXFR
        | RecordType::OPT
        | RecordType::TSIG => Err(format!("{t} is not a record type that can be stored")),
        t if super::signed::is_generated(t) => {
            Err(format!("{t} records are generated by mailzone"))
        }
        _ => Ok(t),
    }
}

/// Parses a domain name from the API, relative to `origin` unless it ends with a dot, and
/// checks it is a usable host-style name: letters, digits, `-` and `_` in labels of at
/// most 63 bytes, and `*` only as a whole leftmost label.
pub fn parse_api_name(text: &str, origin: &Name) -> Result<Name, String> {
    if text.is_empty() {
        return Err("the name is empty".into());
    }
    if text != "@" {
        let body = text.strip_suffix('.').unwrap_or(text);
        for (i, label) in body.split('.').enumerate() {
            if label.is_empty() {
                return Err(format!("{text}: empty label"));
            }
            if label.len() > 63 {
                return Err(format!("{text}: label {label} is longer than 63 bytes"));
            }
            if label == "*" && i == 0 {
                continue;
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return Err(format!("{text}: character {c:?} is not allowed in a name"));
            }
        }
    }
    parse_name(text, origin, 0).map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Name {
        Name::from_ascii("example.test.").unwrap()
    }

    #[test]
    fn multi_line_dkim_record_with_semicolon_in_quotes_is_read_as_one_record() {
        let text = "$TTL 300\n\
            sel._domainkey IN TXT ( \"v=DKIM1; k=rsa; \"\n   \"p=MIIB\" ) ; comment\n";
        let recs = read(text, &origin()).unwrap();
        assert_eq!(recs.len(), 1);
        let RData::TXT(txt) = &recs[0].record.data else {
            panic!("not TXT")
        };
        assert_eq!(&*txt.txt_data[0], b"v=DKIM1; k=rsa; ");
        assert_eq!(&*txt.txt_data[1], b"p=MIIB");
        assert_eq!(recs[0].line, 2);
    }

    #[test]
    fn decimal_escapes_are_decoded_as_decimal() {
        let recs = read("@ 60 TXT \"a\\077b\\\"\"\n", &origin()).unwrap();
        let RData::TXT(txt) = &recs[0].record.data else {
            panic!("not TXT")
        };
        assert_eq!(&*txt.txt_data[0], b"aMb\"");
    }

    #[test]
    fn errors_carry_the_line_number() {
        let e = read("$TTL 60\n@ NS ns1\nwww A 999.1.1.1\n", &origin()).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("IPv4"), "{e}");
    }

    #[test]
    fn include_is_refused() {
        let e = read("$INCLUDE /etc/passwd\n", &origin()).unwrap_err();
        assert!(e.message.contains("$INCLUDE"), "{e}");
    }

    #[test]
    fn txt_string_over_255_bytes_is_refused() {
        let long = "x".repeat(256);
        let e = read(&format!("@ 60 TXT \"{long}\"\n"), &origin()).unwrap_err();
        assert!(e.message.contains("255"), "{e}");
    }

    #[test]
    fn blank_owner_inherits_previous_owner_and_ttl_units_work() {
        let recs = read("mail 1h IN A 192.0.2.1\n  AAAA 2001:db8::1\n", &origin()).unwrap();
        assert_eq!(
            recs[1].record.name,
            Name::from_ascii("mail.example.test.").unwrap()
        );
        assert_eq!(recs[1].record.ttl, 3600);
    }

    #[test]
    fn rare_types_go_through_hickory() {
        let recs = read("@ 60 CAA 0 issue \"letsencrypt.org\"\n", &origin()).unwrap();
        assert_eq!(recs[0].record.record_type(), RecordType::CAA);
    }

    #[test]
    fn escaped_names_are_read_byte_for_byte_and_decimal() {
        let recs = read("a\\.b\\065\\255 60 A 192.0.2.1\n", &origin()).unwrap();
        let first: Vec<u8> = recs[0].record.name.iter().next().unwrap().to_vec();
        assert_eq!(first, b"a.bA\xff");
        assert_eq!(
            crate::zone::writer::name_text(&recs[0].record.name),
            "a\\.bA\\255.example.test."
        );
    }

    #[test]
    fn a_raw_non_ascii_name_is_refused_asking_for_a_labels() {
        let e = read("bücher 60 A 192.0.2.1\n", &origin()).unwrap_err();
        assert!(e.message.contains("xn--"), "{e}");
    }

    #[test]
    fn a_rare_type_that_would_not_be_written_back_identically_is_refused() {
        // hickory writes SVCB/HTTPS target names in Unicode: refused rather than changed.
        let e = read("@ 60 HTTPS 1 xn--bcher-kva.example. alpn=h2\n", &origin()).unwrap_err();
        assert!(
            e.message.contains("cannot be written back identically"),
            "{e}"
        );
        assert!(read("@ 60 HTTPS 1 svc.example. alpn=h2\n", &origin()).is_ok());
    }

    #[test]
    fn random_and_mangled_text_never_panics() {
        let origin = origin();
        let base = "$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60 ( ; c\n)\n@ NS ns1\nns1 A 192.0.2.1\n\
            @ MX 10 mx\n@ TXT \"v=spf1 \\\" -all\" \"\\065\"\n_s._tcp SRV 0 1 993 mx\n@ CAA 0 issue \"ca\"\n";
        let mut state: u64 = 0x2545f4914f6cdd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b" \t\n\\\"();@$*.0123456789abcINSOATXMXV";
        for _ in 0..3000 {
            let mut text = base.as_bytes().to_vec();
            for _ in 0..(1 + next() % 6) {
                let at = (next() as usize) % text.len();
                match next() % 3 {
                    0 => text[at] = alphabet[(next() as usize) % alphabet.len()],
                    1 => text.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                    _ => {
                        text.remove(at);
                    }
                }
            }
            let text = String::from_utf8_lossy(&text);
            let _ = crate::zone::Zone::from_master_text(&origin, &text);
        }
    }
}
