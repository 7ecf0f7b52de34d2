//! Table tests of the judges: gathered answers in, findings out. No network: the answers are
//! written here as two nameservers would serve them.

use std::collections::BTreeMap;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::judge;
use crate::diagnose::check::Finding;
use crate::diagnose::gather::{Gathered, Served, Subject};
use crate::dkim::DkimAlgorithm;
use crate::provision::association::{Association, Mode};
use crate::provision::dkim::{DkimGeneration, DkimKey, SelectorState};
use crate::provision::platform::Platform;
use crate::provision::records::Families;

const NS1: &str = "ns1.far.example. (192.0.2.1)";
const NS2: &str = "ns2.far.example. (192.0.2.2)";
const OUR_KEY: &str = "MCowBQYDK2VwAyEAb3VyLWtleS1vdXIta2V5LW91ci1rZXktb3VyLWtleQ==";
const OTHER_KEY: &str = "MCowBQYDK2VwAyEAb3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXk=";

fn association(dkim: Option<SelectorState>) -> Association {
    let mut a = Association::new(
        "far.example.",
        "pro1",
        Mode::Authoritative,
        Families {
            dkim: dkim.is_some(),
            ..Families::default()
        },
        false,
        "tok".into(),
    );
    if let Some(state) = dkim {
        a.dkim = vec![DkimGeneration {
            n: 1,
            keys: vec![DkimKey {
                selector: "s1".into(),
                algorithm: DkimAlgorithm::Ed25519,
                public: OUR_KEY.into(),
            }],
            state,
            created_at: 0,
            published_at: None,
            active_since: None,
            retiring_since: None,
        }];
    }
    a
}

fn ok(records: &[(RecordType, String)]) -> Served {
    Served::Answer {
        rcode: ResponseCode::NoError,
        authoritative: true,
        records: records.to_vec(),
    }
}

/// Both servers serving every expected record (and the SOA).
fn all_served(subject: &Subject<'_>) -> Gathered {
    let mut g = Gathered {
        servers: vec![NS1.into(), NS2.into()],
        ..Gathered::default()
    };
    for q in subject.questions() {
        let mut records: Vec<(RecordType, String)> = subject
            .expected
            .iter()
            .filter(|e| {
                e.name == q.0
                    && (e.rtype == q.1.to_string() || q.1 == RecordType::TXT && e.rtype == "TXT")
            })
            .map(|e| (q.1, e.value.clone()))
            .collect();
        if q.1 == RecordType::SOA {
            records.push((
                q.1,
                "ns1.far.example. hostmaster.far.example. 7 3600 600 86400 60".into(),
            ));
        }
        for s in [NS1, NS2] {
            g.answers
                .entry(q.clone())
                .or_default()
                .insert(s.into(), ok(&records));
        }
    }
    g
}

fn set(g: &mut Gathered, name: &str, rtype: RecordType, served: Served) {
    let by: &mut BTreeMap<String, Served> = g.answers.entry((name.into(), rtype)).or_default();
    for s in [NS1, NS2] {
        by.insert(s.into(), served.clone());
    }
}

fn red(findings: &[Finding]) -> Vec<&str> {
    findings
        .iter()
        .filter(|f| f.is_red())
        .map(|f| f.code.as_str())
        .collect()
}

fn find<'a>(findings: &'a [Finding], code: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no {code}: {findings:#?}"))
}

type Change = fn(&mut Gathered);

#[test]
fn answers_to_findings() {
    let cases: Vec<(&str, Change, Vec<&str>)> = vec![
        ("everything served", |_| {}, vec![]),
        (
            "no MX",
            |g| set(g, "far.example.", RecordType::MX, ok(&[])),
            vec!["mx.missing"],
        ),
        (
            "two SPF records",
            |g| {
                let spf = (
                    RecordType::TXT,
                    "v=spf1 include:mx.mail.example.net ~all".to_string(),
                );
                let other = (RecordType::TXT, "v=spf1 mx -all".to_string());
                set(g, "far.example.", RecordType::TXT, ok(&[spf, other]))
            },
            vec!["spf.several"],
        ),
        (
            "two DMARC records",
            |g| {
                let a = (RecordType::TXT, "v=DMARC1; p=reject".to_string());
                let b = (RecordType::TXT, "v=DMARC1; p=none".to_string());
                set(g, "_dmarc.far.example.", RecordType::TXT, ok(&[a, b]))
            },
            vec!["dmarc.several"],
        ),
        (
            "ns2 unreachable",
            |g| {
                g.answers
                    .get_mut(&("far.example.".into(), RecordType::SOA))
                    .unwrap()
                    .insert(NS2.into(), Served::Failed("no answer (timeout)".into()));
            },
            vec!["delegation.unreachable"],
        ),
        (
            "ns2 lame: its other answers do not count",
            |g| {
                for by in g.answers.values_mut() {
                    by.insert(
                        NS2.into(),
                        Served::Answer {
                            rcode: ResponseCode::NoError,
                            authoritative: false,
                            records: vec![],
                        },
                    );
                }
            },
            vec!["delegation.lame"],
        ),
        (
            "no server with authority",
            |g| {
                for by in g.answers.values_mut() {
                    for s in [NS1, NS2] {
                        by.insert(s.into(), Served::Failed("refused".into()));
                    }
                }
            },
            vec![
                "delegation.unreachable",
                "delegation.unreachable",
                "mx.unchecked",
                "srv.unchecked",
                "autoconfig.unchecked",
                "spf.unchecked",
                "dmarc.unchecked",
                "ownership.unchecked",
            ],
        ),
    ];
    let platform = Platform::example();
    let a = association(None);
    let subject = Subject::new(&a, &platform);
    for (what, change, want) in cases {
        let mut g = all_served(&subject);
        change(&mut g);
        let findings = judge(&subject, &g, None, &[]);
        assert_eq!(red(&findings), want, "{what}: {findings:#?}");
    }
}

#[test]
fn with_one_server_down_the_others_say_on_how_many_they_were_judged() {
    let platform = Platform::example();
    let a = association(None);
    let subject = Subject::new(&a, &platform);
    let mut g = all_served(&subject);
    g.answers
        .get_mut(&("far.example.".into(), RecordType::SOA))
        .unwrap()
        .insert(NS2.into(), Served::Failed("no answer".into()));
    let findings = judge(&subject, &g, None, &[]);
    let mx = find(&findings, "mx.ok");
    assert!(
        mx.message.ends_with("(1 of 2 nameservers answered)"),
        "{mx:?}"
    );
    assert!(find(&findings, "ownership.ok").message.contains("1 of 2"));
}

#[test]
fn an_issued_dkim_key_served_nowhere_is_missing_and_another_key_is_a_mismatch() {
    let platform = Platform::example();
    for state in [SelectorState::Generated, SelectorState::Active] {
        let a = association(Some(state));
        let subject = Subject::new(&a, &platform);
        let mut g = all_served(&subject);
        assert!(red(&judge(&subject, &g, None, &[])).is_empty(), "{state:?}");
        set(
            &mut g,
            "s1._domainkey.far.example.",
            RecordType::TXT,
            ok(&[]),
        );
        let findings = judge(&subject, &g, None, &[]);
        assert_eq!(red(&findings), vec!["dkim.missing"], "{state:?}");
        assert!(find(&findings, "dkim.missing").fix[0].contains(OUR_KEY));
        let other = (
            RecordType::TXT,
            format!("v=DKIM1; k=ed25519; p={OTHER_KEY}"),
        );
        set(
            &mut g,
            "s1._domainkey.far.example.",
            RecordType::TXT,
            ok(&[other]),
        );
        let findings = judge(&subject, &g, None, &[]);
        assert_eq!(red(&findings), vec!["dkim.key_mismatch"], "{state:?}");
        let f = find(&findings, "dkim.key_mismatch");
        assert!(
            f.remove[0].contains(OTHER_KEY) && f.fix[0].contains(OUR_KEY),
            "{f:?}"
        );
    }
}

#[test]
fn fixes_say_what_to_add_and_what_to_remove() {
    let platform = Platform::example();
    let a = association(None);
    let subject = Subject::new(&a, &platform);
    let mut g = all_served(&subject);
    let mut mx: Vec<(RecordType, String)> = subject
        .expected
        .iter()
        .filter(|e| e.rtype == "MX")
        .map(|e| (RecordType::MX, e.value.clone()))
        .collect();
    mx.push((RecordType::MX, "10 mx.other.example.".into()));
    set(&mut g, "far.example.", RecordType::MX, ok(&mx));
    let spf = (RecordType::TXT, "v=spf1 ip4:192.0.2.9 +all".to_string());
    set(&mut g, "far.example.", RecordType::TXT, ok(&[spf]));
    let findings = judge(&subject, &g, None, &[]);
    let f = find(&findings, "mx.other_platform");
    assert_eq!(
        f.remove,
        vec!["far.example. IN MX 10 mx.other.example.".to_string()]
    );
    let f = find(&findings, "spf.pass_all");
    assert_eq!(
        f.remove,
        vec!["far.example. IN TXT \"v=spf1 ip4:192.0.2.9 +all\"".to_string()]
    );
    assert_eq!(f.fix.len(), 1);
    assert!(f.fix[0].contains("\"v=spf1 ip4:192.0.2.9 ~all\""), "{f:?}");
    for f in findings.iter().filter(|f| f.is_red()) {
        assert!(
            !f.fix.is_empty() || !f.remove.is_empty(),
            "no action: {f:?}"
        );
    }
}

fn with_mail_security() -> Association {
    let mut a = association(None);
    a.records.mta_sts = true;
    a.records.tls_rpt = true;
    a
}

/// What every answering server serves, plus the policy fetched as `policy`.
fn sts_case(policy: Option<Result<String, String>>, change: Change) -> Vec<String> {
    let a = with_mail_security();
    let p = Platform::example();
    let subject = Subject::new(&a, &p);
    let mut g = all_served(&subject);
    g.web.mta_sts_policy = policy;
    change(&mut g);
    red(&judge(&subject, &g, None, &[]))
        .into_iter()
        .map(String::from)
        .filter(|c| c.starts_with("mta-sts") || c.starts_with("tls-rpt"))
        .collect()
}

fn example_policy() -> String {
    Platform::example().mta_sts_policy().unwrap()
}

#[test]
fn mta_sts_and_tls_rpt_served_and_the_policy_fetched_are_green() {
    assert!(sts_case(Some(Ok(example_policy())), |_| {}).is_empty());
}

#[test]
fn mta_sts_records_to_findings() {
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "no _mta-sts record",
            |g| set(g, "_mta-sts.far.example.", RecordType::TXT, ok(&[])),
            "mta-sts.missing",
        ),
        (
            "an old id",
            |g| {
                let old = (RecordType::TXT, "v=STSv1; id=old1".to_string());
                set(g, "_mta-sts.far.example.", RecordType::TXT, ok(&[old]))
            },
            "mta-sts.stale_id",
        ),
        (
            "two ids",
            |g| {
                let a = (RecordType::TXT, "v=STSv1; id=a1".to_string());
                let b = (RecordType::TXT, "v=STSv1; id=b2".to_string());
                set(g, "_mta-sts.far.example.", RecordType::TXT, ok(&[a, b]))
            },
            "mta-sts.several",
        ),
        (
            "a malformed id",
            |g| {
                let bad = (RecordType::TXT, "v=STSv1; id=no-dashes".to_string());
                set(g, "_mta-sts.far.example.", RecordType::TXT, ok(&[bad]))
            },
            "mta-sts.invalid",
        ),
        (
            "no mta-sts host",
            |g| set(g, "mta-sts.far.example.", RecordType::CNAME, ok(&[])),
            "mta-sts.missing",
        ),
        (
            "a TLS-RPT record without a URI scheme",
            |g| {
                let bad = (RecordType::TXT, "v=TLSRPTv1; rua=tls@x.test".to_string());
                set(g, "_smtp._tls.far.example.", RecordType::TXT, ok(&[bad]))
            },
            "tls-rpt.invalid",
        ),
        (
            "no TLS-RPT record",
            |g| set(g, "_smtp._tls.far.example.", RecordType::TXT, ok(&[])),
            "tls-rpt.missing",
        ),
    ];
    for (what, change, code) in cases {
        let red = sts_case(Some(Ok(example_policy())), change);
        assert!(red.contains(&code.to_string()), "{what}: {red:?}");
    }
}

#[test]
fn a_policy_missing_an_mx_or_unreachable_is_red() {
    let short = example_policy().replace("mx: mx4.mail.example.net\r\n", "");
    assert_eq!(sts_case(Some(Ok(short)), |_| {}), ["mta-sts.mx_uncovered"]);
    let pattern = example_policy()
        .lines()
        .filter(|l| !l.starts_with("mx:"))
        .map(|l| format!("{l}\r\n"))
        .collect::<String>()
        + "mx: *.mail.example.net\r\n";
    assert!(sts_case(Some(Ok(pattern)), |_| {}).is_empty());
    assert_eq!(
        sts_case(Some(Err("certificate not valid".into())), |_| {}),
        ["mta-sts.policy_unreachable"]
    );
    let no_mode = example_policy().replace("mode: testing\r\n", "");
    assert_eq!(
        sts_case(Some(Ok(no_mode)), |_| {}),
        ["mta-sts.policy_invalid"]
    );
}
