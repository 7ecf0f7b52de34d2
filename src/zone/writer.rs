//! Writing zones back as RFC 1035 master-file text.
//!
//! This module owns the presentation format of every record we write: absolute owner names,
//! explicit TTL and class, records in DNS canonical order (SOA first), and TXT strings
//! quoted and escaped (`\"`, `\\`, `\DDD` for bytes outside printable ASCII) so that our own
//! reader, BIND's `named-checkzone` and Knot read back exactly the same bytes. hickory has no
//! writer and its TXT `Display` is lossy (`../shared/HICKORY-NOTES.md` §2).
//!
//! Names are always written in their wire form: A-labels as they are (`xn--bcher-kva`, never
//! the Unicode `bücher` that hickory's `Name` `Display` gives), every byte other than a
//! letter, digit, `-` or `_` escaped (`\.` inside a label, `\DDD` for non-printable bytes).
//! Nothing here may use a `Name`'s `Display` or `to_ascii` (whose `\DDD` escapes are octal).

use std::fmt::Write;

use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::Zone;

/// The whole zone as master-file text.
/// Records generated for DNSSEC are left out: they are kept in the zone's signatures file
/// (`super::signed`), and the zone file stays what its owner wrote.
pub fn to_master_text(zone: &Zone) -> String {
    let view = zone.view();
    let mut records: Vec<&Record> = view.user_records().collect();
    records.sort_by_cached_key(|r| {
        (
            r.record_type() != RecordType::SOA,
            r.name.clone(),
            u16::from(r.record_type()),
            rdata_text(&r.data),
        )
    });
    let mut out = String::with_capacity(64 * records.len() + 128);
    let _ = writeln!(
        out,
        "; zone {} written by mailzone; edits through the API keep this file current",
        name_text(zone.origin())
    );
    let _ = writeln!(out, "$ORIGIN {}", name_text(zone.origin()));
    for r in records {
        let _ = writeln!(out, "{}", record_line(r));
    }
    out
}

/// One record as a master-file line: `owner TTL IN TYPE rdata`.
pub fn record_line(r: &Record) -> String {
    format!(
        "{} {} IN {} {}",
        name_text(&r.name),
        r.ttl,
        r.record_type(),
        rdata_text(&r.data)
    )
}

/// The presentation form of the record data.
pub fn rdata_text(data: &RData) -> String {
    match data {
        RData::TXT(txt) => {
            let mut s = String::new();
            for (i, part) in txt.txt_data.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                quote_into(&mut s, part);
            }
            s
        }
        RData::HINFO(h) => {
            let mut s = String::new();
            quote_into(&mut s, &h.cpu);
            s.push(' ');
            quote_into(&mut s, &h.os);
            s
        }
        RData::SOA(soa) => format!(
            "{} {} {} {} {} {} {}",
            name_text(&soa.mname),
            name_text(&soa.rname),
            soa.serial,
            soa.refresh,
            soa.retry,
            soa.expire,
            soa.minimum
        ),
        RData::NS(ns) => name_text(&ns.0),
        RData::CNAME(cname) => name_text(&cname.0),
        RData::PTR(ptr) => name_text(&ptr.0),
        RData::ANAME(aname) => name_text(&aname.0),
        RData::MX(mx) => format!("{} {}", mx.preference, name_text(&mx.exchange)),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority,
            srv.weight,
            srv.port,
            name_text(&srv.target)
        ),
        // The other types carry no names or are checked at input to come back identical
        // from this text (`master::check_writable`).
        other => other.to_string(),
    }
}

/// A domain name in master-file form: absolute (trailing dot), A-labels kept as they are,
/// and every byte that is not a letter, digit, `-` or `_` escaped, so that any reader
/// (ours, BIND, Knot) gets back exactly the wire bytes.
pub fn name_text(name: &Name) -> String {
    let mut s = String::with_capacity(name.len() + 1);
    for label in name.iter() {
        if label == b"*" {
            s.push('*');
        } else {
            for &b in label {
                match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => s.push(b as char),
                    0x21..=0x7e => {
                        s.push('\\');
                        s.push(b as char);
                    }
                    _ => {
                        let _ = write!(s, "\\{b:03}");
                    }
                }
            }
        }
        s.push('.');
    }
    if s.is_empty() {
        return ".".into();
    }
    if !name.is_fqdn() {
        s.pop();
    }
    s
}

/// A quoted character-string with every byte either printable or escaped.
fn quote_into(s: &mut String, bytes: &[u8]) {
    s.push('"');
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                s.push('\\');
                s.push(b as char);
            }
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\{b:03}");
            }
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Name;

    #[test]
    fn a_zone_survives_writing_and_reading_back() {
        let origin = Name::from_ascii("example.test.").unwrap();
        let text = "$TTL 300\n@ SOA ns1 hostmaster 5 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.1\n\
            @ MX 10 mx\nmx AAAA 2001:db8::1\n@ TXT \"v=spf1 -all\" \"a\\\"b\\\\c\\255\"\n\
            _imaps._tcp SRV 0 1 993 mx\n@ CAA 0 issue \"letsencrypt.org\"\nwww CNAME @\n";
        let zone = Zone::from_master_text(&origin, text).unwrap();
        let written = to_master_text(&zone);
        let again = Zone::from_master_text(&origin, &written).unwrap();
        let mut a: Vec<String> = zone.view().records().map(record_line).collect();
        let mut b: Vec<String> = again.view().records().map(record_line).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{written}");
        assert!(
            written.lines().nth(2).unwrap().contains(" SOA "),
            "{written}"
        );
    }
}
