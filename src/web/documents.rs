//! The documents the web listener serves, and the one request body it reads.
//!
//! This module owns the exact shape of the Thunderbird autoconfig file (clientConfig 1.1),
//! the Outlook autodiscover answers (POX 2006a and JSON v1.0), and reading an autodiscover
//! POX request: with quick-xml, which never expands entities; a document type declaration,
//! an entity other than the five predefined ones, nesting past a few levels or anything
//! malformed is refused. It is pure: no sockets, no state.

use std::fmt::Write as _;

use crate::provision::platform::{Endpoint, Platform, Security, Service};

/// An e-mail address checked enough to be echoed in a document: `local@domain`, the domain
/// lower case without a final dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub local: String,
    pub domain: String,
}

impl Address {
    /// Parses `local@domain` (RFC 5321 dot-atom local part, at most 64 bytes; a valid
    /// domain name). `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (local, domain) = text.trim().rsplit_once('@')?;
        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(atext));
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let domain_ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.contains('.')
            && domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        (local_ok && domain_ok).then(|| Self {
            local: local.to_string(),
            domain,
        })
    }

    pub fn text(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

/// Escapes text for XML element content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn host(e: &Endpoint) -> &str {
    e.host.trim_end_matches('.')
}

/// The platform's endpoints of one service, implicit TLS first (RFC 8314 §5.1): clients
/// take the first they can use.
fn endpoints(platform: &Platform, service: Service) -> Vec<&Endpoint> {
    let mut v: Vec<&Endpoint> = platform
        .endpoints
        .iter()
        .filter(|e| e.service == service)
        .collect();
    v.sort_by_key(|e| match e.security {
        Security::ImplicitTls => 0,
        Security::Starttls => 1,
    });
    v
}

/// Thunderbird's autoconfig file (clientConfig version 1.1) for `domain`: one
/// `incomingServer` per IMAP and POP3 endpoint, one `outgoingServer` per submission
/// endpoint, implicit TLS first, the full address as user name.
pub fn autoconfig(domain: &str, platform: &Platform) -> String {
    let d = xml_escape(domain);
    let mut x = String::with_capacity(1024);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n");
    let _ = writeln!(x, "  <emailProvider id=\"{d}\">");
    let _ = writeln!(x, "    <domain>{d}</domain>");
    let _ = writeln!(x, "    <displayName>{d}</displayName>");
    let _ = writeln!(x, "    <displayShortName>{d}</displayShortName>");
    let server = |x: &mut String, tag: &str, kind: &str, e: &Endpoint| {
        let socket = match e.security {
            Security::ImplicitTls => "SSL",
            Security::Starttls => "STARTTLS",
        };
        let _ = writeln!(x, "    <{tag} type=\"{kind}\">");
        let _ = writeln!(x, "      <hostname>{}</hostname>", xml_escape(host(e)));
        let _ = writeln!(x, "      <port>{}</port>", e.port);
        let _ = writeln!(x, "      <socketType>{socket}</socketType>");
        x.push_str("      <authentication>password-cleartext</authentication>\n");
        x.push_str("      <username>%EMAILADDRESS%</username>\n");
        let _ = writeln!(x, "    </{tag}>");
    };
    for e in endpoints(platform, Service::Imap) {
        server(&mut x, "incomingServer", "imap", e);
    }
    for e in endpoints(platform, Service::Pop3) {
        server(&mut x, "incomingServer", "pop3", e);
    }
    for e in endpoints(platform, Service::Submission) {
        server(&mut x, "outgoingServer", "smtp", e);
    }
    x.push_str("  </emailProvider>\n</clientConfig>\n");
    x
}

/// The POX request schema Outlook sends, and the response schema it asks for.
pub const REQUEST_SCHEMA: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006";
pub const RESPONSE_SCHEMA: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";
const ENVELOPE_SCHEMA: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";

/// Why an autodiscover request was refused (all 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the request is not UTF-8")]
    NotUtf8,
    #[error("malformed XML at byte {at}: {reason}")]
    Malformed { at: u64, reason: String },
    #[error("a document type declaration is not accepted (no DTD, no entities)")]
    Doctype,
    #[error("the entity &{0}; is not accepted (only the five XML ones)")]
    Entity(String),
    #[error("elements nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("no Autodiscover/Request/EMailAddress element")]
    NoAddress,
    #[error("EMailAddress is not an e-mail address")]
    BadAddress,
    #[error("AcceptableResponseSchema {0:?} is not the Outlook 2006a schema")]
    Schema(String),
}

const MAX_DEPTH: usize = 8;

/// The e-mail address of an autodiscover POX request
/// (`Autodiscover/Request/EMailAddress`), checked against the request schema's shape.
pub fn read_request(body: &[u8]) -> Result<Address, RequestError> {
    use quick_xml::events::Event;

    let text = std::str::from_utf8(body).map_err(|_| RequestError::NotUtf8)?;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut path: Vec<String> = Vec::new();
    let mut address: Option<String> = None;
    let mut schema: Option<String> = None;
    loop {
        let event = reader.read_event().map_err(|e| RequestError::Malformed {
            at: reader.buffer_position(),
            reason: e.to_string(),
        })?;
        match event {
            Event::DocType(_) => return Err(RequestError::Doctype),
            Event::Start(e) => {
                if path.len() >= MAX_DEPTH {
                    return Err(RequestError::TooDeep);
                }
                path.push(e.local_name().as_ref().to_string());
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => append(&path, &t, &mut address, &mut schema),
            Event::CData(t) => append(&path, &t, &mut address, &mut schema),
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten()
                } else {
                    match &*r {
                        "amp" => Some('&'),
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        _ => None,
                    }
                };
                let Some(c) = c else {
                    return Err(RequestError::Entity(r.chars().take(40).collect()));
                };
                append(&path, &c.to_string(), &mut address, &mut schema);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !path.is_empty() {
        return Err(RequestError::Malformed {
            at: reader.buffer_position(),
            reason: "unclosed elements".into(),
        });
    }
    if let Some(s) = schema
        && s.trim() != RESPONSE_SCHEMA
    {
        return Err(RequestError::Schema(s.chars().take(100).collect()));
    }
    let address = address.ok_or(RequestError::NoAddress)?;
    Address::parse(&address).ok_or(RequestError::BadAddress)
}

/// Adds text to the field the current element path names, if any.
fn append(path: &[String], text: &str, address: &mut Option<String>, schema: &mut Option<String>) {
    let field = match path {
        [a, r, f] if a == "Autodiscover" && r == "Request" => f.as_str(),
        _ => return,
    };
    let slot = match field {
        "EMailAddress" => address,
        "AcceptableResponseSchema" => schema,
        _ => return,
    };
    // Bounded: the body is, and an address longer than this is refused anyway.
    let s = slot.get_or_insert_with(String::new);
    if s.len() < 512 {
        s.push_str(text);
    }
}

/// The POX answer (response schema 2006a): the address echoed, one `Protocol` per
/// service the platform offers (IMAP, POP3, SMTP), the preferred endpoint of each.
pub fn autodiscover_response(address: &Address, platform: &Platform) -> String {
    let a = xml_escape(&address.text());
    let mut x = String::with_capacity(1024);
    x.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    let _ = writeln!(x, "<Autodiscover xmlns=\"{ENVELOPE_SCHEMA}\">");
    let _ = writeln!(x, "  <Response xmlns=\"{RESPONSE_SCHEMA}\">");
    let _ = writeln!(
        x,
        "    <User>\n      <DisplayName>{a}</DisplayName>\n      <AutoDiscoverSMTPAddress>{a}</AutoDiscoverSMTPAddress>\n    </User>"
    );
    x.push_str(
        "    <Account>\n      <AccountType>email</AccountType>\n      <Action>settings</Action>\n",
    );
    for (service, kind) in [
        (Service::Imap, "IMAP"),
        (Service::Pop3, "POP3"),
        (Service::Submission, "SMTP"),
    ] {
        let Some(e) = endpoints(platform, service).into_iter().next() else {
            continue;
        };
        let encryption = match e.security {
            Security::ImplicitTls => "SSL",
            Security::Starttls => "TLS",
        };
        let _ = writeln!(x, "      <Protocol>");
        let _ = writeln!(x, "        <Type>{kind}</Type>");
        let _ = writeln!(x, "        <Server>{}</Server>", xml_escape(host(e)));
        let _ = writeln!(x, "        <Port>{}</Port>", e.port);
        let _ = writeln!(x, "        <DomainRequired>off</DomainRequired>");
        let _ = writeln!(x, "        <LoginName>{a}</LoginName>");
        let _ = writeln!(x, "        <SPA>off</SPA>");
        let _ = writeln!(x, "        <SSL>on</SSL>");
        let _ = writeln!(x, "        <Encryption>{encryption}</Encryption>");
        let _ = writeln!(x, "        <AuthRequired>on</AuthRequired>");
        if service == Service::Submission {
            let _ = writeln!(x, "        <UsePOPAuth>off</UsePOPAuth>");
            let _ = writeln!(x, "        <SMTPLast>off</SMTPLast>");
        }
        let _ = writeln!(x, "      </Protocol>");
    }
    x.push_str("    </Account>\n  </Response>\n</Autodiscover>\n");
    x
}

/// The POX error answer (code 600, "Invalid Request"), as Exchange gives it.
pub fn autodiscover_error(message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover xmlns=\"{ENVELOPE_SCHEMA}\">\n  <Response>\n    <Error>\n      <ErrorCode>600</ErrorCode>\n      <Message>{}</Message>\n    </Error>\n  </Response>\n</Autodiscover>\n",
        xml_escape(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(address: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"{REQUEST_SCHEMA}\"><Request><EMailAddress>{address}</EMailAddress><AcceptableResponseSchema>{RESPONSE_SCHEMA}</AcceptableResponseSchema></Request></Autodiscover>"
        )
    }

    #[test]
    fn a_pox_request_gives_its_address() {
        let a = read_request(request("Jane.Doe@Shop.Test").as_bytes()).unwrap();
        assert_eq!(a.local, "Jane.Doe");
        assert_eq!(a.domain, "shop.test");
    }

    #[test]
    fn predefined_entities_and_character_references_are_read() {
        let a = read_request(request("a&amp;b&#x2B;c@shop.test").as_bytes()).unwrap();
        assert_eq!(a.local, "a&b+c");
    }

    #[test]
    fn a_doctype_is_refused_so_no_entity_is_ever_expanded() {
        let lol = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]><Autodiscover><Request><EMailAddress>&lol2;@shop.test</EMailAddress></Request></Autodiscover>";
        assert_eq!(read_request(lol.as_bytes()), Err(RequestError::Doctype));
    }

    #[test]
    fn an_undeclared_entity_is_refused() {
        let e = read_request(request("&xxe;@shop.test").as_bytes()).unwrap_err();
        assert_eq!(e, RequestError::Entity("xxe".into()));
    }

    #[test]
    fn malformed_deep_or_addressless_requests_are_refused() {
        assert!(matches!(
            read_request(b"<Autodiscover><Request>"),
            Err(RequestError::Malformed { .. })
        ));
        assert!(matches!(
            read_request(b"<a></b>"),
            Err(RequestError::Malformed { .. })
        ));
        let deep = "<a>".repeat(20);
        assert_eq!(read_request(deep.as_bytes()), Err(RequestError::TooDeep));
        assert_eq!(
            read_request(b"<Autodiscover><Request></Request></Autodiscover>"),
            Err(RequestError::NoAddress)
        );
        assert_eq!(
            read_request(request("not an address").as_bytes()),
            Err(RequestError::BadAddress)
        );
        assert_eq!(read_request(&[0xff, 0xfe]), Err(RequestError::NotUtf8));
    }

    #[test]
    fn addresses_are_checked() {
        assert!(Address::parse("a@b.test").is_some());
        assert!(Address::parse("a@b.test.").is_some());
        for bad in [
            "",
            "@b.test",
            "a@",
            "a@b",
            "a b@c.test",
            "a@-b.test",
            "<x>@b.test",
            "a..b@c.test",
        ] {
            assert!(Address::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_autoconfig_file_lists_implicit_tls_first_and_the_address_as_user_name() {
        let x = autoconfig("shop.test", &Platform::example());
        let imap = x.find("type=\"imap\"").unwrap();
        let pop = x.find("type=\"pop3\"").unwrap();
        assert!(imap < pop);
        let smtp: Vec<_> = x
            .match_indices("<port>")
            .map(|(i, _)| &x[i..i + 10])
            .collect();
        assert_eq!(
            smtp,
            ["<port>993<", "<port>995<", "<port>465<", "<port>587<"]
        );
        assert_eq!(x.matches("<username>%EMAILADDRESS%</username>").count(), 4);
    }
}
