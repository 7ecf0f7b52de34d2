//! The public web listener, as mail clients and sending servers use it: names resolved
//! through mailzone's own DNS, then the documents fetched over real HTTP and HTTPS sockets
//! (a test CA made here; the listener's certificates installed like any operator's).

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hickory_proto::rr::{RData, RecordType};
use mailzone::config::Config;
use mailzone::provision::platform::Platform;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::json;

const MAIL_ZONE: &str = "$ORIGIN mail.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\nweb A 127.0.0.1\n";

/// A platform whose client-facing names all point at `web.mail.test.` (127.0.0.1 in the
/// mail.test zone served here).
fn platform() -> Platform {
    serde_json::from_value(json!({
        "id": "web1",
        "mx": [{"host": "mx1.mail.test.", "priority": 10}, {"host": "mx2.mail.test.", "priority": 20}],
        "endpoints": [
            {"service": "submission", "host": "smtp.mail.test.", "port": 587, "security": "starttls"},
            {"service": "imap", "host": "imap.mail.test.", "port": 993, "security": "implicit-tls"},
            {"service": "pop3", "host": "pop.mail.test.", "port": 995, "security": "implicit-tls"},
            {"service": "submission", "host": "smtp.mail.test.", "port": 465, "security": "implicit-tls"}
        ],
        "autodiscover_host": "web.mail.test.",
        "autoconfig_host": "web.mail.test.",
        "spf": ["include:spf.mail.test"],
        "dmarc": {"policy": "none"},
        "mta_sts": {"mode": "enforce", "max_age_secs": 86400, "web_host": "web.mail.test."},
        "tls_rpt": {"rua": ["mailto:tls@mail.test"]}
    }))
    .unwrap()
}

fn web_config(config: &mut Config) {
    config.web.enabled = true;
    config.web.http_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.web.https_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.platforms = vec![platform()];
}

/// A daemon serving shop.test and mail.test, the web listener on, shop.test associated
/// with mta-sts and tls-rpt, and certificates for shop.test's web names.
struct Site {
    d: TestDaemon,
    ca: CertificateDer<'static>,
    ca_pem: String,
}

fn start_site() -> Site {
    let d = TestDaemon::start_tuned(
        &[
            ("shop.test.zone", &small_zone("shop.test", 1, "192.0.2.80")),
            ("mail.test.zone", MAIL_ZONE),
        ],
        web_config,
    );
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/domains",
        &json!({"domain": "shop.test", "platform": "web1", "mode": "authoritative",
                "records": {"mta-sts": true, "tls-rpt": true}}),
    );
    assert_eq!(status, 201, "{body}");
    let pki = Pki::new();
    let (chain, key) = pki.leaf(&[
        "autoconfig.shop.test",
        "autodiscover.shop.test",
        "mta-sts.shop.test",
    ]);
    let certs = d.daemon().web_certs().expect("web is on");
    for stem in [
        "autoconfig.shop.test",
        "autodiscover.shop.test",
        "mta-sts.shop.test",
    ] {
        certs.install(stem, &chain, &key).unwrap();
    }
    Site {
        ca: pki.ca_der(),
        ca_pem: pki.ca_pem(),
        d,
    }
}

impl Site {
    fn http_addr(&self) -> SocketAddr {
        self.d.daemon().web_http_addr().unwrap()
    }
    fn https_addr(&self) -> SocketAddr {
        self.d.daemon().web_https_addr().unwrap()
    }
}

/// A throwaway certificate authority.
struct Pki {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mailzone test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        Self {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// (chain PEM, key PEM) for these names.
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn request(method: &str, host: &str, path: &str, extra: &str, body: &str) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}");
    if method == "POST" {
        r.push_str(&format!(
            "Content-Type: text/xml\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r
}

/// One request over plain HTTP.
fn plain(addr: SocketAddr, raw: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse(&out)
}

fn client_config(ca: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// One request over HTTPS, the certificate checked for `sni` against the test CA.
fn tls(addr: SocketAddr, sni: &str, ca: &CertificateDer<'static>, raw: &str) -> Reply {
    let (reply, _) = tls_with_cert(addr, sni, ca, raw).unwrap();
    reply
}

fn tls_with_cert(
    addr: SocketAddr,
    sni: &str,
    ca: &CertificateDer<'static>,
    raw: &str,
) -> Result<(Reply, CertificateDer<'static>), std::io::Error> {
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(client_config(ca), name).unwrap();
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = rustls::StreamOwned::new(conn, s);
    stream.write_all(raw.as_bytes())?;
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => {}
        // The server may close without close_notify after Connection: close.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e),
    }
    let cert = stream
        .conn
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .expect("a certificate");
    Ok((parse(&out), cert))
}

/// The address a name resolves to through mailzone's DNS (following CNAMEs between the
/// zones it serves).
fn resolve(dns: SocketAddr, name: &str) -> IpAddr {
    let mut name = name.to_string();
    for _ in 0..5 {
        let m = udp(dns, &name, RecordType::A);
        let mut next = None;
        for r in m.answers.iter() {
            match &r.data {
                RData::A(a) => return IpAddr::V4(a.0),
                RData::CNAME(c) => next = Some(c.0.to_ascii()),
                _ => {}
            }
        }
        name = next.unwrap_or_else(|| panic!("{name} does not resolve: {m:?}"));
    }
    panic!("CNAME chain too long");
}

fn txt(dns: SocketAddr, name: &str) -> Vec<String> {
    udp(dns, name, RecordType::TXT)
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The text of every element at `path` (local names, `/`-separated) of an XML document,
/// and the attribute `type` of the element at each `path` (as `path@type`).
fn xml_fields(xml: &str) -> Vec<(String, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut path: Vec<String> = Vec::new();
    let mut out = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => {
                path.push(e.local_name().as_ref().to_string());
                for a in e.attributes() {
                    let a = a.unwrap();
                    out.push((
                        format!("{}@{}", path.join("/"), a.key.local_name().as_ref()),
                        a.value.to_string(),
                    ));
                }
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => out.push((path.join("/"), t.xml10_content().into_owned())),
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

fn values<'a>(fields: &'a [(String, String)], path: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn thunderbird_autoconfig_is_reached_through_the_names_mailzone_publishes() {
    let site = start_site();
    // What Thunderbird does: resolve autoconfig.<domain>, then fetch from it.
    let ip = resolve(site.d.dns, "autoconfig.shop.test.");
    assert_eq!(ip, IpAddr::from([127, 0, 0, 1]));
    let addr = SocketAddr::new(ip, site.http_addr().port());
    let r = plain(
        addr,
        &request(
            "GET",
            "autoconfig.shop.test",
            "/mail/config-v1.1.xml?emailaddress=jane%40shop.test",
            "",
            "",
        ),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("content-type").unwrap().contains("xml"));
    let f = xml_fields(&r.body);
    // The fields Thunderbird's parser (readFromXML.sys.mjs) reads.
    assert_eq!(values(&f, "clientConfig@version"), ["1.1"]);
    assert_eq!(values(&f, "clientConfig/emailProvider@id"), ["shop.test"]);
    assert_eq!(
        values(&f, "clientConfig/emailProvider/domain"),
        ["shop.test"]
    );
    assert_eq!(
        values(&f, "clientConfig/emailProvider/incomingServer@type"),
        ["imap", "pop3"]
    );
    assert_eq!(
        values(&f, "clientConfig/emailProvider/incomingServer/hostname"),
        ["imap.mail.test", "pop.mail.test"]
    );
    assert_eq!(
        values(&f, "clientConfig/emailProvider/incomingServer/port"),
        ["993", "995"]
    );
    assert_eq!(
        values(&f, "clientConfig/emailProvider/incomingServer/socketType"),
        ["SSL", "SSL"]
    );
    assert_eq!(
        values(&f, "clientConfig/emailProvider/outgoingServer@type"),
        ["smtp", "smtp"]
    );
    // Implicit TLS first (RFC 8314), then STARTTLS.
    assert_eq!(
        values(&f, "clientConfig/emailProvider/outgoingServer/port"),
        ["465", "587"]
    );
    assert_eq!(
        values(&f, "clientConfig/emailProvider/outgoingServer/socketType"),
        ["SSL", "STARTTLS"]
    );
    for kind in ["incomingServer", "outgoingServer"] {
        for v in values(&f, &format!("clientConfig/emailProvider/{kind}/username")) {
            assert_eq!(v, "%EMAILADDRESS%");
        }
        for v in values(
            &f,
            &format!("clientConfig/emailProvider/{kind}/authentication"),
        ) {
            assert_eq!(v, "password-cleartext");
        }
    }
}

#[test]
fn the_well_known_autoconfig_path_over_https_gives_the_same_document() {
    let site = start_site();
    let plain_doc = plain(
        site.http_addr(),
        &request(
            "GET",
            "autoconfig.shop.test",
            "/mail/config-v1.1.xml",
            "",
            "",
        ),
    );
    let secure = tls(
        site.https_addr(),
        "autoconfig.shop.test",
        &site.ca,
        &request(
            "GET",
            "autoconfig.shop.test",
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            "",
            "",
        ),
    );
    assert_eq!(secure.status, 200);
    assert_eq!(plain_doc.body, secure.body);
}

fn pox(address: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\">\n  <Request>\n    <EMailAddress>{address}</EMailAddress>\n    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>\n  </Request>\n</Autodiscover>\n"
    )
}

#[test]
fn outlook_autodiscover_round_trip_echoes_the_address_with_imap_pop3_and_smtp() {
    let site = start_site();
    let ip = resolve(site.d.dns, "autodiscover.shop.test.");
    let addr = SocketAddr::new(ip, site.https_addr().port());
    let r = tls(
        addr,
        "autodiscover.shop.test",
        &site.ca,
        &request(
            "POST",
            "autodiscover.shop.test",
            "/autodiscover/autodiscover.xml",
            "",
            &pox("jane@shop.test"),
        ),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains(
        "<Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">"
    ));
    let f = xml_fields(&r.body);
    let base = "Autodiscover/Response";
    assert_eq!(
        values(&f, &format!("{base}/User/AutoDiscoverSMTPAddress")),
        ["jane@shop.test"]
    );
    assert_eq!(
        values(&f, &format!("{base}/Account/AccountType")),
        ["email"]
    );
    assert_eq!(values(&f, &format!("{base}/Account/Action")), ["settings"]);
    let p = format!("{base}/Account/Protocol");
    assert_eq!(values(&f, &format!("{p}/Type")), ["IMAP", "POP3", "SMTP"]);
    assert_eq!(
        values(&f, &format!("{p}/Server")),
        ["imap.mail.test", "pop.mail.test", "smtp.mail.test"]
    );
    assert_eq!(values(&f, &format!("{p}/Port")), ["993", "995", "465"]);
    assert_eq!(
        values(&f, &format!("{p}/LoginName")),
        ["jane@shop.test", "jane@shop.test", "jane@shop.test"]
    );
    assert_eq!(values(&f, &format!("{p}/SSL")), ["on", "on", "on"]);
}

#[test]
fn autodiscover_json_v1_points_outlook_at_the_pox_endpoint() {
    let site = start_site();
    let r = tls(
        site.https_addr(),
        "autodiscover.shop.test",
        &site.ca,
        &request(
            "GET",
            "autodiscover.shop.test",
            "/autodiscover/autodiscover.json/v1.0/jane@shop.test?Protocol=AutodiscoverV1",
            "",
            "",
        ),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        json(&r.body),
        json!({"Protocol": "AutodiscoverV1", "Url": "https://autodiscover.shop.test/autodiscover/autodiscover.xml"})
    );
    let other = tls(
        site.https_addr(),
        "autodiscover.shop.test",
        &site.ca,
        &request(
            "GET",
            "autodiscover.shop.test",
            "/autodiscover/autodiscover.json/v1.0/jane@shop.test?Protocol=ActiveSync",
            "",
            "",
        ),
    );
    assert_eq!(other.status, 400);
    assert_eq!(json(&other.body)["ErrorCode"], "InvalidProtocol");
}

/// The policy served for `domain` over HTTPS.
fn policy(site: &Site) -> Reply {
    tls(
        site.https_addr(),
        "mta-sts.shop.test",
        &site.ca,
        &request(
            "GET",
            "mta-sts.shop.test",
            "/.well-known/mta-sts.txt",
            "",
            "",
        ),
    )
}

fn sts_id(site: &Site) -> String {
    let t = txt(site.d.dns, "_mta-sts.shop.test.");
    assert_eq!(t.len(), 1, "{t:?}");
    t[0].strip_prefix("v=STSv1; id=")
        .unwrap_or_else(|| panic!("{t:?}"))
        .to_string()
}

#[test]
fn the_mta_sts_policy_is_served_over_https_and_its_id_is_published() {
    let site = start_site();
    assert_eq!(
        resolve(site.d.dns, "mta-sts.shop.test."),
        IpAddr::from([127, 0, 0, 1])
    );
    let r = policy(&site);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(
        r.body,
        "version: STSv1\r\nmode: enforce\r\nmx: mx1.mail.test\r\nmx: mx2.mail.test\r\nmax_age: 86400\r\n"
    );
    assert_eq!(
        sts_id(&site),
        mailzone::provision::mta_sts::policy_id(&r.body)
    );
    assert_eq!(
        txt(site.d.dns, "_smtp._tls.shop.test."),
        ["v=TLSRPTv1; rua=mailto:tls@mail.test"]
    );
}

#[test]
fn the_mta_sts_policy_is_never_served_over_plain_http() {
    let site = start_site();
    let r = plain(
        site.http_addr(),
        &request(
            "GET",
            "mta-sts.shop.test",
            "/.well-known/mta-sts.txt",
            "",
            "",
        ),
    );
    assert_eq!(r.status, 404);
}

#[test]
fn changing_the_platforms_mx_changes_the_id_and_the_policy_together() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    std::fs::write(
        zones.join("shop.test.zone"),
        small_zone("shop.test", 1, "192.0.2.80"),
    )
    .unwrap();
    std::fs::write(zones.join("mail.test.zone"), MAIL_ZONE).unwrap();
    let mut config = test_config(dir.path());
    web_config(&mut config);
    let file = dir.path().join("mailzone.yaml");
    let write_config = |config: &Config| {
        std::fs::write(&file, serde_yaml::to_string(config).unwrap()).unwrap();
    };
    write_config(&config);
    let d = TestDaemon::run_with_file(dir, config.clone(), Some(file.clone()));
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/domains",
        &json!({"domain": "shop.test", "platform": "web1", "mode": "authoritative",
                "records": {"mta-sts": true}}),
    );
    assert_eq!(status, 201, "{body}");
    let pki = Pki::new();
    let (chain, key) = pki.leaf(&["mta-sts.shop.test"]);
    d.daemon()
        .web_certs()
        .unwrap()
        .install("mta-sts.shop.test", &chain, &key)
        .unwrap();
    let site = Site {
        d,
        ca: pki.ca_der(),
        ca_pem: pki.ca_pem(),
    };
    let id_before = sts_id(&site);
    let before = policy(&site).body;
    // A reload that changes nothing changes neither.
    let (status, _) = api(site.d.http, "POST", "/v1/reload", &json!({}));
    assert_eq!(status, 200);
    assert_eq!(sts_id(&site), id_before);
    assert_eq!(policy(&site).body, before);

    config.platforms[0]
        .mx
        .push(serde_json::from_value(json!({"host": "mx3.mail.test.", "priority": 30})).unwrap());
    write_config(&config);
    let (status, body) = api(site.d.http, "POST", "/v1/reload", &json!({}));
    assert_eq!(status, 200, "{body}");
    let after = policy(&site).body;
    assert!(after.contains("mx: mx3.mail.test\r\n"), "{after}");
    let id_after = sts_id(&site);
    assert_ne!(id_after, id_before);
    assert_eq!(id_after, mailzone::provision::mta_sts::policy_id(&after));
}

#[test]
fn certificates_are_replaced_without_a_restart() {
    let site = start_site();
    let raw = request(
        "GET",
        "autoconfig.shop.test",
        "/mail/config-v1.1.xml",
        "",
        "",
    );
    let (_, first) =
        tls_with_cert(site.https_addr(), "autoconfig.shop.test", &site.ca, &raw).unwrap();
    // A new certificate from another CA, written as an operator would, then a reload.
    let other = Pki::new();
    let (chain, key) = other.leaf(&["autoconfig.shop.test"]);
    let certs_dir = site.d.dir.path().join("keys/certs");
    std::fs::write(certs_dir.join("autoconfig.shop.test.crt"), &chain).unwrap();
    let key_file = certs_dir.join("autoconfig.shop.test.key");
    std::fs::write(&key_file, &key).unwrap();
    let (status, _) = api(site.d.http, "POST", "/v1/reload", &json!({}));
    assert_eq!(status, 200);
    let (r, second) = tls_with_cert(
        site.https_addr(),
        "autoconfig.shop.test",
        &other.ca_der(),
        &raw,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_ne!(first, second, "the new certificate is served");
    // The old CA no longer validates it: the switch is real.
    assert!(tls_with_cert(site.https_addr(), "autoconfig.shop.test", &site.ca, &raw).is_err());
}

#[test]
fn a_key_file_others_may_read_is_refused_and_the_previous_certificate_stays() {
    use std::os::unix::fs::PermissionsExt;
    let site = start_site();
    let raw = request(
        "GET",
        "autoconfig.shop.test",
        "/mail/config-v1.1.xml",
        "",
        "",
    );
    let (_, before) =
        tls_with_cert(site.https_addr(), "autoconfig.shop.test", &site.ca, &raw).unwrap();
    let other = Pki::new();
    let (chain, key) = other.leaf(&["autoconfig.shop.test"]);
    let certs_dir = site.d.dir.path().join("keys/certs");
    std::fs::write(certs_dir.join("autoconfig.shop.test.crt"), &chain).unwrap();
    let key_file = certs_dir.join("autoconfig.shop.test.key");
    std::fs::write(&key_file, &key).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let errors = site.d.daemon().web_certs().unwrap().load();
    assert!(
        errors.iter().any(|e| e.to_string().contains("chmod 600")),
        "{errors:?}"
    );
    let (_, after) =
        tls_with_cert(site.https_addr(), "autoconfig.shop.test", &site.ca, &raw).unwrap();
    assert_eq!(before, after);
}

#[test]
fn an_unknown_host_gets_404_on_every_path() {
    let site = start_site();
    for (host, path) in [
        ("autoconfig.other.test", "/mail/config-v1.1.xml"),
        ("other.test", "/.well-known/autoconfig/mail/config-v1.1.xml"),
        ("mta-sts.other.test", "/.well-known/mta-sts.txt"),
        ("bad_host!", "/mail/config-v1.1.xml"),
    ] {
        let r = plain(site.http_addr(), &request("GET", host, path, "", ""));
        assert_eq!(r.status, 404, "{host}{path}");
        assert_eq!(r.body, "not found\n");
    }
    let r = tls(
        site.https_addr(),
        "mta-sts.shop.test",
        &site.ca,
        &request(
            "GET",
            "mta-sts.other.test",
            "/.well-known/mta-sts.txt",
            "",
            "",
        ),
    );
    assert_eq!(r.status, 404);
    // Counted by a bounded label, never by host.
    let (_, metrics) = http(site.d.http, "GET", "/metrics", None, None);
    assert!(
        metric(
            &metrics,
            "mailzone_web_requests_total{document=\"unknown_host\",status=\"404\"}"
        ) >= 5.0,
        "{metrics}"
    );
    assert!(!metrics.contains("other.test"));
}

#[test]
fn no_file_is_ever_served_from_disk() {
    let site = start_site();
    for path in [
        "/",
        "/../../../../etc/passwd",
        "/mail/../../etc/passwd",
        "/.well-known/",
        "/keys/certs/autoconfig.shop.test.key",
    ] {
        let r = plain(site.http_addr(), &request("GET", "shop.test", path, "", ""));
        assert_eq!(r.status, 404, "{path}");
    }
}

#[test]
fn an_address_of_another_domain_gets_404_and_nothing_of_it() {
    let site = start_site();
    let r = tls(
        site.https_addr(),
        "autodiscover.shop.test",
        &site.ca,
        &request(
            "POST",
            "autodiscover.shop.test",
            "/autodiscover/autodiscover.xml",
            "",
            &pox("jane@other.test"),
        ),
    );
    assert_eq!(r.status, 404);
    assert!(!r.body.contains("mail.test"));
    let r = plain(
        site.http_addr(),
        &request(
            "GET",
            "autoconfig.shop.test",
            "/mail/config-v1.1.xml?emailaddress=jane%40other.test",
            "",
            "",
        ),
    );
    assert_eq!(r.status, 404);
    assert!(!r.body.contains("mail.test"));
}

fn post_autodiscover(site: &Site, body: &str) -> Reply {
    plain(
        site.http_addr(),
        &request(
            "POST",
            "autodiscover.shop.test",
            "/autodiscover/autodiscover.xml",
            "",
            body,
        ),
    )
}

#[test]
fn malformed_autodiscover_requests_get_400_without_the_settings() {
    let site = start_site();
    for body in [
        "<Autodiscover><Request><EMailAddress>jane@shop.test</EMailAddress>",
        "not xml at all <",
        "<Autodiscover><Request><EMailAddress>jane@shop.test</Wrong></Request></Autodiscover>",
        "<Autodiscover><Request></Request></Autodiscover>",
    ] {
        let r = post_autodiscover(&site, body);
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert!(r.body.contains("<ErrorCode>600</ErrorCode>"), "{r:?}");
        assert!(!r.body.contains("imap.mail.test"));
    }
}

#[test]
fn entity_expansion_in_autodiscover_is_refused() {
    let site = start_site();
    let laughs = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n{}]>\n<Autodiscover><Request><EMailAddress>&lol9;@shop.test</EMailAddress></Request></Autodiscover>",
        (1..10)
            .map(|i| format!(
                "<!ENTITY lol{i} \"{}\">\n",
                format!(
                    "&lol{};",
                    if i == 1 {
                        String::new()
                    } else {
                        (i - 1).to_string()
                    }
                )
                .repeat(10)
            ))
            .collect::<String>()
    );
    let r = post_autodiscover(&site, &laughs);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("document type declaration"), "{r:?}");
    let xxe = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><Autodiscover><Request><EMailAddress>&xxe;</EMailAddress></Request></Autodiscover>";
    let r = post_autodiscover(&site, xxe);
    assert_eq!(r.status, 400);
    assert!(!r.body.contains("root:"));
    let undeclared = pox("&xxe;@shop.test");
    assert_eq!(post_autodiscover(&site, &undeclared).status, 400);
}

#[test]
fn oversized_bodies_and_headers_are_refused() {
    let site = start_site();
    let big = pox(&format!("{}@shop.test", "a".repeat(20_000)));
    let r = post_autodiscover(&site, &big);
    assert_eq!(r.status, 413, "{r:?}");
    let huge_header = format!("X-Filler: {}\r\n", "b".repeat(20_000));
    let r = plain(
        site.http_addr(),
        &request(
            "GET",
            "autoconfig.shop.test",
            "/mail/config-v1.1.xml",
            &huge_header,
            "",
        ),
    );
    assert_eq!(r.status, 431, "{r:?}");
}

#[test]
fn the_web_listener_is_off_by_default() {
    let d = TestDaemon::example();
    assert!(d.daemon().web_http_addr().is_none());
    assert!(d.daemon().web_https_addr().is_none());
    assert!(Config::default().web.enabled.eq(&false));
}

/// A third-party MTA-STS client (postfix-mta-sts-resolver's resolver, as `mta-sts-query`
/// runs it) resolves `_mta-sts.shop.test` and `mta-sts.shop.test` through mailzone, fetches
/// the policy over HTTPS trusting only the test CA, and accepts it.
#[test]
fn postfix_mta_sts_resolver_accepts_the_policy() {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mta-sts-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let made = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && std::process::Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "postfix-mta-sts-resolver"])
                .status()
                .is_ok_and(|s| s.success());
        if !made {
            eprintln!(
                "SKIPPED: postfix-mta-sts-resolver could not be installed from PyPI into {}",
                venv.display()
            );
            return;
        }
    }
    let site = start_site();
    let ca_file = site.d.dir.path().join("ca.pem");
    std::fs::write(&ca_file, &site.ca_pem).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/mta_sts_query.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg("shop.test")
        .env("MZ_DNS", site.d.dns.to_string())
        .env("MZ_HTTPS_PORT", site.https_addr().port().to_string())
        .env("MZ_CA", &ca_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: serde_json::Value = json(stdout.trim());
    assert_eq!(v["result"], "VALID", "{stdout}\n{stderr}");
    assert_eq!(v["id"], sts_id(&site));
    assert_eq!(v["policy"]["mode"], "enforce");
    assert_eq!(v["policy"]["mx"], json!(["mx1.mail.test", "mx2.mail.test"]));
    assert_eq!(v["policy"]["max_age"], 86400);
}

/// "The world": a mailzone on 127.0.0.2 hosting far.test (associated there, so it serves
/// its records and its web documents) and mail.test; the daemon under test associates
/// far.test as an external domain and diagnoses it through the world's DNS and HTTPS.
struct World {
    world: TestDaemon,
    d: TestDaemon,
    _ca_file: tempfile::NamedTempFile,
}

fn quick_platform() -> Platform {
    let mut p = platform();
    p.ttl = 1;
    // The daemon under test does not host far.test: an external domain's ownership record.
    p.ownership_target = Some("check.mail.test.".into());
    p
}

fn world(check_autoconfig_http: bool) -> (World, Pki) {
    let zone = "$ORIGIN far.test.\n$TTL 1\n@ SOA ns1 hostmaster 1 3600 600 86400 1\n@ NS ns1\nns1 A 127.0.0.2\n";
    let mail = "$ORIGIN mail.test.\n$TTL 1\n@ SOA ns1 hostmaster 1 3600 600 86400 1\n@ NS ns1\nns1 A 127.0.0.2\nweb A 127.0.0.2\n";
    let world =
        TestDaemon::start_tuned(&[("far.test.zone", zone), ("mail.test.zone", mail)], |c| {
            c.dns.listen = vec!["127.0.0.2:0".parse().unwrap()];
            web_config(c);
            c.web.http_listen = None;
            c.web.https_listen = Some("127.0.0.2:0".parse().unwrap());
            c.platforms = vec![quick_platform()];
        });
    let (status, body) = api(
        world.http,
        "POST",
        "/v1/domains",
        &json!({"domain": "far.test", "platform": "web1", "mode": "authoritative",
                "records": {"mta-sts": true, "tls-rpt": true}}),
    );
    assert_eq!(status, 201, "{body}");
    let pki = Pki::new();
    let (chain, key) = pki.leaf(&[
        "mta-sts.far.test",
        "autoconfig.far.test",
        "autodiscover.far.test",
    ]);
    let certs = world.daemon().web_certs().unwrap();
    for stem in [
        "mta-sts.far.test",
        "autoconfig.far.test",
        "autodiscover.far.test",
    ] {
        certs.install(stem, &chain, &key).unwrap();
    }
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), pki.ca_pem()).unwrap();
    let (dns, https) = (world.dns, world.daemon().web_https_addr().unwrap());
    let ca_path = ca_file.path().to_path_buf();
    let d = TestDaemon::start_tuned(&[], move |c| {
        c.platforms = vec![quick_platform()];
        c.diagnosis.resolver = Some(dns);
        c.diagnosis.port = dns.port();
        c.diagnosis.web_port = https.port();
        c.diagnosis.web_ca_file = ca_path;
        c.diagnosis.check_autoconfig_http = check_autoconfig_http;
        c.diagnosis.interval_secs = 3600;
        // A TLS handshake of a debug build on a loaded machine can take a while.
        c.diagnosis.timeout_ms = 2000;
        c.diagnosis.budget_ms = 8000;
    });
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/domains",
        &json!({"domain": "far.test", "platform": "web1", "mode": "authoritative",
                "records": {"mta-sts": true, "tls-rpt": true}}),
    );
    assert_eq!(status, 201, "{body}");
    // Past the platform's TTL: what is wrong is red, not pending.
    std::thread::sleep(Duration::from_millis(1200));
    (
        World {
            world,
            d,
            _ca_file: ca_file,
        },
        pki,
    )
}

impl World {
    /// The codes of the checks `names`, from a diagnosis run now.
    fn codes(&self, names: &[&str]) -> Vec<String> {
        let (status, text) = http(
            self.d.http,
            "POST",
            "/v1/domains/far.test/diagnose",
            Some(TOKEN),
            None,
        );
        assert_eq!(status, 200, "{text}");
        let v = json(&text);
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| names.contains(&f["check"].as_str().unwrap_or("")))
            .map(|f| f["code"].as_str().unwrap().to_string())
            .collect()
    }
}

#[test]
fn diagnosis_fetches_the_policy_over_https_and_finds_mta_sts_tls_rpt_and_autoconfig_green() {
    let (w, _) = world(true);
    let mut codes = w.codes(&["mta-sts", "tls-rpt", "autoconfig"]);
    codes.sort();
    assert_eq!(codes, ["autoconfig.ok", "mta-sts.ok", "tls-rpt.ok"]);
}

#[test]
fn the_status_page_shows_mta_sts_and_tls_rpt_boxes_from_the_diagnosis() {
    let (w, _) = world(true);
    w.codes(&["mta-sts", "tls-rpt"]);
    let (status, page) = http(w.d.http, "GET", "/", Some(TOKEN), None);
    assert_eq!(status, 200, "{page}");
    for check in ["mta-sts", "tls-rpt"] {
        assert!(
            page.contains(&format!(r#"class="box green" data-check="{check}""#)),
            "{check}: {page}"
        );
    }
}

#[test]
fn diagnosis_reports_a_policy_whose_certificate_is_not_trusted() {
    let (w, _) = world(false);
    let other = Pki::new();
    let (chain, key) = other.leaf(&["mta-sts.far.test"]);
    w.world
        .daemon()
        .web_certs()
        .unwrap()
        .install("mta-sts.far.test", &chain, &key)
        .unwrap();
    assert_eq!(w.codes(&["mta-sts"]), ["mta-sts.policy_unreachable"]);
}

#[test]
fn diagnosis_reports_a_stale_mta_sts_id() {
    let (w, _) = world(false);
    let (status, body) = api(
        w.world.http,
        "PATCH",
        "/v1/zones/far.test/records",
        &json!({"operations": [{"op": "replace", "name": "_mta-sts", "type": "TXT", "ttl": 1, "records": ["\"v=STSv1; id=old1\""]}]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(w.codes(&["mta-sts"]), ["mta-sts.stale_id"]);
}

#[test]
fn requests_to_unknown_hosts_and_bad_bodies_are_not_logged() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    let d = ChildDaemon::start_configured(
        dir,
        &format!(
            "web:\n  enabled: true\n  http_listen: \"127.0.0.1:{port}\"\n  https_listen: null\n"
        ),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for i in 0..40 {
        let host = format!("autoconfig.unknown{i}.test");
        let r = plain(
            addr,
            &request("GET", &host, "/mail/config-v1.1.xml", "", ""),
        );
        assert_eq!(r.status, 404);
        let r = plain(
            addr,
            &request(
                "POST",
                &host,
                "/autodiscover/autodiscover.xml",
                "",
                "<!DOCTYPE x [<!ENTITY a \"b\">]>",
            ),
        );
        assert_eq!(r.status, 404);
    }
    std::thread::sleep(Duration::from_millis(500));
    let logged: Vec<String> = d.lines.try_iter().collect();
    assert!(
        !logged
            .iter()
            .any(|l| l.contains("unknown") || l.contains("/mail/") || l.contains("autodiscover")),
        "{logged:#?}"
    );
    assert!(logged.len() < 5, "{logged:#?}");
}
