//! The one DNS client of the diagnosis and of `mailzone dkim verify`: a reply counts only
//! from the server asked, with our ID and our question. A fake server on loopback answers
//! each query with forgeries first (wrong ID, wrong question, from another address), then
//! maybe the genuine answer.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use mailzone::config::DiagnosisConfig;
use mailzone::diagnose::probe::{ProbeError, Prober, txt_values};

fn reply_to(query: &Message, id: u16, name: &Name, text: &str) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Response, query.metadata.op_code);
    m.metadata.authoritative = true;
    m.add_query(Query::query(name.clone(), RecordType::TXT));
    m.add_answer(Record::from_rdata(
        name.clone(),
        60,
        RData::TXT(TXT::new(vec![text.to_string()])),
    ));
    m.to_vec().unwrap()
}

/// Serves `rounds` queries: forgeries, then the genuine answer when `genuine`. Returns how
/// many queries arrived.
fn fake_server(
    ip: [u8; 4],
    genuine: bool,
    rounds: usize,
) -> (SocketAddr, std::thread::JoinHandle<usize>) {
    let socket = UdpSocket::bind(SocketAddr::from((ip, 0))).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let other = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 9], 0))).unwrap();
        let mut buf = [0u8; 1500];
        let mut seen = 0;
        for _ in 0..rounds {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                break;
            };
            seen += 1;
            let q = Message::from_vec(&buf[..n]).unwrap();
            let id = q.metadata.id;
            let name = q.queries[0].name().clone();
            let elsewhere = Name::from_ascii("elsewhere.example.").unwrap();
            let forged = "v=DKIM1; k=ed25519; p=forged";
            socket
                .send_to(&reply_to(&q, id.wrapping_add(1), &name, forged), from)
                .unwrap();
            socket
                .send_to(&reply_to(&q, id, &elsewhere, forged), from)
                .unwrap();
            other
                .send_to(&reply_to(&q, id, &name, forged), from)
                .unwrap();
            if genuine {
                std::thread::sleep(Duration::from_millis(20));
                socket
                    .send_to(
                        &reply_to(&q, id, &name, "v=DKIM1; k=ed25519; p=genuine"),
                        from,
                    )
                    .unwrap();
            }
        }
        seen
    });
    (addr, handle)
}

fn prober(server: SocketAddr) -> Prober {
    Prober::new(&DiagnosisConfig {
        resolver: Some(server),
        timeout_ms: 300,
        ..DiagnosisConfig::default()
    })
    .unwrap()
}

fn ask(server: SocketAddr) -> Result<Message, ProbeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let name = Name::from_ascii("s1._domainkey.far.example.").unwrap();
    runtime.block_on(async {
        prober(server)
            .query(server, &name, RecordType::TXT, true)
            .await
    })
}

#[test]
fn replies_with_a_wrong_id_question_or_source_are_ignored() {
    let (server, handle) = fake_server([127, 0, 0, 8], true, 1);
    let reply = ask(server).expect("the genuine answer is accepted");
    assert_eq!(
        txt_values(&reply),
        vec!["v=DKIM1; k=ed25519; p=genuine".to_string()]
    );
    assert_eq!(handle.join().unwrap(), 1);
}

#[test]
fn only_forged_replies_end_in_a_timeout_after_one_retry() {
    let (server, handle) = fake_server([127, 0, 0, 8], false, 3);
    match ask(server) {
        Err(ProbeError::Timeout { .. }) => {}
        other => panic!("a forged reply was accepted: {other:?}"),
    }
    assert_eq!(
        handle.join().unwrap(),
        2,
        "the query is sent twice: once and one retry"
    );
}
