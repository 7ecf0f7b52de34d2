//! What one client can do to the others: log flooding, TCP slots, HTTP connections and
//! timeouts, descriptor exhaustion, response rate limiting, and the small input rules of
//! the API (trailing JSON, padded tokens). Real daemons, real sockets.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

fn example_query() -> Vec<u8> {
    query_message("example.test.", RecordType::A, &Ask::default())
        .to_vec()
        .unwrap()
}

/// A query whose EDNS option claims 4 bytes of data but carries 2 (the OPT record's data
/// ends first): hickory's decoder used to WARN once per such packet.
fn short_edns_option_query() -> Vec<u8> {
    let mut q = example_query();
    // The encoded OPT record ends with its RDLENGTH, 0: replace it with our options.
    assert_eq!(&q[q.len() - 2..], &[0, 0]);
    q.truncate(q.len() - 2);
    q.extend_from_slice(&[0, 6, 0, 10, 0, 4, 1, 2]);
    q
}

/// Configuration text for a child daemon in `dir`, JSON logs, with extra keys per section.
fn child_config(dir: &tempfile::TempDir, dns: &str, http: &str, log: &str) -> String {
    std::fs::create_dir_all(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/example.test.zone"), EXAMPLE_ZONE).unwrap();
    format!(
        "zones_dir: {}\nkeys_dir: {}\ndns:\n  listen: [\"127.0.0.1:0\"]\n{dns}http:\n  listen: \"127.0.0.1:0\"\n{http}log:\n  format: json\n{log}diagnosis:\n  resolver: \"127.0.0.1:9\"\n  timeout_ms: 200\n",
        dir.path().join("zones").display(),
        dir.path().join("keys").display()
    )
}

/// Every log line the child writes during `span`.
fn lines_during(d: &ChildDaemon, span: Duration) -> Vec<String> {
    let deadline = Instant::now() + span;
    let mut lines = Vec::new();
    while let Ok(l) = d
        .lines
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        lines.push(l);
    }
    lines
}

fn problems(http_addr: SocketAddr, kind: &str) -> f64 {
    let (_, body) = http(http_addr, "GET", "/metrics", None, None);
    metric(
        &body,
        &format!("mailzone_client_problems_total{{kind=\"{kind}\"}}"),
    )
}

#[test]
fn queries_with_short_edns_options_are_counted_and_summarised_not_logged_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = child_config(&dir, "", "", "  summary_interval_secs: 1\n");
    let d = ChildDaemon::spawn(dir, &config, &[]);
    let bad = short_edns_option_query();
    let socket = udp_from("127.0.0.1", Duration::from_millis(300));
    let mut answered = 0;
    let mut buf = [0u8; 2048];
    for _ in 0..40 {
        for _ in 0..100 {
            socket.send_to(&bad, d.dns).unwrap();
        }
        for _ in 0..100 {
            if socket.recv_from(&mut buf).is_err() {
                break;
            }
            answered += 1;
        }
    }
    let mut stream = tcp_from("127.0.0.1", d.dns).unwrap();
    for _ in 0..20 {
        assert!(tcp_ask(&mut stream, &bad).is_some(), "TCP answers too");
    }
    let lines = lines_during(&d, Duration::from_millis(2500));
    assert!(
        lines.len() <= 4,
        "{} log lines for 4,020 bad queries: {:?}",
        lines.len(),
        &lines[..lines.len().min(5)]
    );
    assert!(
        lines.iter().any(|l| l.contains("dns_bad_edns_options=")),
        "the summary line names the kind: {lines:?}"
    );
    let counted = problems(d.http, "dns_bad_edns_options");
    assert!(
        counted >= answered as f64 + 20.0,
        "{counted} counted, {answered} UDP answers seen"
    );
    assert!(answered >= 3000, "only {answered} of 4000 answered");
}

#[test]
fn out_of_descriptors_udp_keeps_answering_and_accept_errors_are_logged_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let config = child_config(
        &dir,
        "",
        "  max_connections: 10000\n  header_read_timeout_secs: 30\n",
        "",
    );
    let d = ChildDaemon::spawn(dir, &config, &["prlimit", "--nofile=64:64", "--"]);
    // Half-sent requests until the daemon cannot accept any more; then one more of each kind
    // waits in the listen queues, and accept() fails on it again and again.
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(d.http).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        held.push(s);
    }
    let _dns_tcp = TcpStream::connect(d.dns).unwrap();
    let lines = lines_during(&d, Duration::from_millis(1500));
    for i in 0..20 {
        let reply = udp_raw(d.dns, &example_query());
        assert!(
            reply.is_some(),
            "UDP query {i} unanswered while out of descriptors"
        );
    }
    let accept_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("accept error"))
        .collect();
    assert!(
        !accept_lines.is_empty() && accept_lines.len() <= 2,
        "one line per listener and interval, got {}: {:?}",
        accept_lines.len(),
        &accept_lines[..accept_lines.len().min(3)]
    );
    assert!(lines.len() <= 4, "{lines:?}");
    // Descriptors freed: HTTP serves again.
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    let (status, _) = http(d.http, "GET", "/healthz", None, None);
    assert_eq!(status, 200);
    assert!(problems(d.http, "http_accept_error") >= 1.0);
}

#[test]
fn one_address_cannot_hold_every_tcp_slot() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.dns.tcp_max_connections = 40;
        c.dns.tcp_max_per_address = 16;
    });
    let q = example_query();
    let mut hogs: Vec<TcpStream> = (0..60)
        .filter_map(|_| tcp_from("127.0.0.1", d.dns).ok())
        .collect();
    let held = hogs.iter_mut().filter_map(|s| tcp_ask(s, &q)).count();
    assert_eq!(held, 16, "the per-address limit");
    for i in 0..20 {
        let mut s = tcp_from("127.0.0.2", d.dns).unwrap();
        assert!(tcp_ask(&mut s, &q).is_some(), "query {i} of another client");
    }
    // The hog's connections still work: they were limited, not dropped.
    assert!(hogs.iter_mut().take(16).all(|s| tcp_ask(s, &q).is_some()));
    assert!(problems(d.http, "tcp_per_address_limit") >= 44.0);
}

/// What one pipelining connection sends: `count` queries with the IDs 0..count, in
/// `chunk`-byte writes (a chunk ends anywhere, inside a length prefix or a message).
fn pipeline(server: SocketAddr, count: u16, chunk: usize) -> Vec<(u16, ResponseCode, usize)> {
    let asks = [
        ("example.test.", RecordType::MX),
        ("_dmarc.example.test.", RecordType::TXT),
        ("autoconfig.example.test.", RecordType::A),
        ("nowhere.example.test.", RecordType::A),
        ("example.org.", RecordType::A),
    ];
    let mut stream = tcp_from("127.0.0.1", server).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = Vec::new();
    for id in 0..count {
        let (name, qtype) = asks[id as usize % asks.len()];
        let mut m = query_message(name, qtype, &Ask::default());
        m.metadata.id = id;
        let q = m.to_vec().unwrap();
        bytes.extend_from_slice(&(q.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&q);
    }
    // Written from another thread: the answers flow back while the queries still go out.
    let mut writer = stream.try_clone().unwrap();
    let sent = std::thread::spawn(move || {
        for piece in bytes.chunks(chunk) {
            writer.write_all(piece).unwrap();
        }
    });
    let mut got = Vec::new();
    for _ in 0..count {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            break;
        }
        let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut reply).unwrap();
        let m = hickory_proto::op::Message::from_vec(&reply).unwrap();
        got.push((m.metadata.id, m.metadata.response_code, m.answers.len()));
    }
    sent.join().unwrap();
    got
}

#[test]
fn a_client_pipelining_on_twenty_connections_gets_every_answer_in_order() {
    // dnsperf's default shape: 20 connections from one address, hundreds of queries in
    // flight on each; the default per-address limit lets them all in.
    let d = TestDaemon::example();
    let server = d.dns;
    let clients: Vec<_> = (0..20)
        .map(|c| {
            // Half write everything at once, half in 7-byte pieces.
            let chunk = if c % 2 == 0 { 1 << 20 } else { 7 };
            std::thread::spawn(move || pipeline(server, 500, chunk))
        })
        .collect();
    for (c, client) in clients.into_iter().enumerate() {
        let got = client.join().unwrap();
        assert_eq!(got.len(), 500, "connection {c} got {} answers", got.len());
        for (i, (id, rcode, answers)) in got.into_iter().enumerate() {
            assert_eq!(id as usize, i, "connection {c}: answers out of order");
            let expected = match i % 5 {
                3 => ResponseCode::NXDomain,
                4 => ResponseCode::Refused,
                _ => ResponseCode::NoError,
            };
            assert_eq!(rcode, expected, "connection {c}, query {i}");
            assert_eq!(answers > 0, i % 5 < 3, "connection {c}, query {i}");
        }
    }
    assert_eq!(problems(d.http, "tcp_per_address_limit"), 0.0);
}

#[test]
fn when_every_tcp_slot_is_taken_the_longest_idle_connection_makes_room() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.dns.tcp_max_connections = 40;
    });
    let q = example_query();
    let mut hogs = Vec::new();
    for host in 10..15 {
        for _ in 0..8 {
            let mut s = tcp_from(&format!("127.0.0.{host}"), d.dns).unwrap();
            assert!(tcp_ask(&mut s, &q).is_some());
            hogs.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(400));
    for i in 0..10 {
        let mut s = tcp_from("127.0.0.2", d.dns).unwrap();
        assert!(tcp_ask(&mut s, &q).is_some(), "query {i} of a new client");
    }
    assert!(problems(d.http, "tcp_evicted") >= 1.0);
    assert_eq!(problems(d.http, "tcp_full"), 0.0);
}

#[test]
fn near_the_tcp_cap_idle_connections_are_closed_sooner() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.dns.tcp_max_connections = 20;
        c.dns.tcp_idle_timeout_secs = 30;
    });
    let q = example_query();
    // 19 of 20 slots: over 90 %.
    let mut conns: Vec<TcpStream> = (20..39)
        .map(|h| tcp_from(&format!("127.0.0.{h}"), d.dns).unwrap())
        .collect();
    assert!(conns.iter_mut().all(|s| tcp_ask(s, &q).is_some()));
    // Closed by the server after about 1 s of idleness instead of 30 s. Wait for the close
    // without sending anything (a query would make the connection active again), allowing
    // for a loaded machine: anything well under the normal 30 s proves the shorter limit.
    let start = Instant::now();
    for s in conns.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut byte = [0u8; 1];
        let closed = match s.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        assert!(closed, "an idle connection near the cap is still open");
    }
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "idle connections near the cap closed after {:?}",
        start.elapsed()
    );
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body); None when closed first.
fn read_response(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).ok()?;
    Some((status, head))
}

/// True when the peer closes the connection within `within` (EOF or reset).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn half_sent_requests_are_closed_after_the_header_timeout() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.http.header_read_timeout_secs = 1;
    });
    let started = Instant::now();
    let mut conns: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(d.http).unwrap();
            s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    for (i, s) in conns.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(3)),
            "connection {i} still open"
        );
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_refused_and_the_connection_closed() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.http.body_read_timeout_secs = 1;
    });
    let mut s = TcpStream::connect(d.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    let started = Instant::now();
    s.write_all(
        format!("POST /v1/zones HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":")
            .as_bytes(),
    )
    .unwrap();
    let (status, _) = read_response(&mut s).expect("an answer before the connection closes");
    assert_eq!(status, 400);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(closed_within(&mut s, Duration::from_secs(2)));
}

#[test]
fn beyond_the_http_connection_cap_new_connections_are_closed_while_existing_clients_work() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.http.max_connections = 10;
    });
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut client = TcpStream::connect(d.http).unwrap();
    client.write_all(request).unwrap();
    assert_eq!(read_response(&mut client).map(|r| r.0), Some(200));
    let idle: Vec<TcpStream> = (0..9)
        .map(|_| TcpStream::connect(d.http).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(d.http).unwrap();
    let _ = extra.write_all(request);
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)),
        "an 11th connection is closed at once"
    );
    client.write_all(request).unwrap();
    assert_eq!(
        read_response(&mut client).map(|r| r.0),
        Some(200),
        "the existing client keeps being served"
    );
    assert!(udp_raw(d.dns, &example_query()).is_some());
    drop(idle);
    assert!(problems_in_process(&d, "http_connection_limit") >= 1.0);
}

fn problems_in_process(d: &TestDaemon, kind: &str) -> f64 {
    let body = d.daemon().shared().metrics.render();
    metric(
        &body,
        &format!("mailzone_client_problems_total{{kind=\"{kind}\"}}"),
    )
}

#[test]
fn a_keep_alive_connection_is_closed_after_its_request_limit() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.http.max_requests_per_connection = 3;
    });
    let mut s = TcpStream::connect(d.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for i in 1..=3 {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (status, head) = read_response(&mut s).unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            head.to_ascii_lowercase().contains("connection: close"),
            i == 3,
            "request {i}: {head}"
        );
    }
    assert!(closed_within(&mut s, Duration::from_secs(2)));
}

#[test]
fn trailing_data_after_a_json_body_is_refused() {
    let d = TestDaemon::example();
    let (status, body) = http(
        d.http,
        "POST",
        "/v1/zones",
        Some(TOKEN),
        Some(r#"{"name": "trailing.test", "nameservers": ["ns1.trailing.test."]} {"x": 1}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("after the JSON value"), "{body}");
    let (status, _) = http(d.http, "GET", "/v1/zones/trailing.test", Some(TOKEN), None);
    assert_eq!(status, 404, "nothing was created");
}

#[test]
fn a_bearer_token_with_padding_is_refused() {
    let d = TestDaemon::example();
    for padded in [format!(" {TOKEN}"), format!("\t{TOKEN}")] {
        let (status, body) = http(d.http, "POST", "/v1/reload", Some(&padded), None);
        assert_eq!(status, 401, "{padded:?}: {body}");
    }
    let (status, _) = http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    assert_eq!(status, 200);
}

#[test]
fn response_rate_limiting_holds_a_flooding_prefix_to_its_rate_and_spares_other_clients() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.dns.rrl.enabled = true;
        c.dns.rrl.responses_per_second = 20;
        c.dns.rrl.slip = 2;
    });
    let q = example_query();
    // 20 sources in 127.0.0.0/24, 40 queries each, and an honest client in 127.0.1.0/24.
    let flood: Vec<std::net::UdpSocket> = (10..30)
        .map(|h| udp_from(&format!("127.0.0.{h}"), Duration::from_millis(1)))
        .collect();
    let honest = udp_from("127.0.1.1", Duration::from_millis(700));
    let started = Instant::now();
    let (mut full, mut truncated, mut honest_full) = (0, 0, 0);
    let mut buf = [0u8; 2048];
    for round in 0..40 {
        for s in &flood {
            s.send_to(&q, d.dns).unwrap();
        }
        // The honest client stays well under the rate itself: 10 queries.
        if round % 4 != 0 {
            continue;
        }
        honest.send_to(&q, d.dns).unwrap();
        if let Ok((n, _)) = honest.recv_from(&mut buf) {
            let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
            if !m.metadata.truncation && !m.answers.is_empty() {
                honest_full += 1;
            }
        }
    }
    // One-second windows touched: a flood shorter than a second may straddle two.
    let windows = started.elapsed().as_secs() + 2;
    // The flood's answers wait in its sockets' buffers.
    std::thread::sleep(Duration::from_millis(300));
    for s in &flood {
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            if m.metadata.truncation {
                assert!(m.answers.is_empty());
                truncated += 1;
            } else {
                full += 1;
            }
        }
    }
    assert_eq!(honest_full, 10, "the other prefix gets every answer");
    assert!(
        full <= 20 * windows as usize,
        "{full} full answers in {windows} one-second windows to one /24 limited to 20/s"
    );
    assert!(full >= 20, "the prefix still gets its rate: {full}");
    let body = d.daemon().shared().metrics.render();
    let dropped = metric(&body, "mailzone_dns_rrl_limited_total{action=\"dropped\"}");
    let slipped = metric(&body, "mailzone_dns_rrl_limited_total{action=\"slipped\"}");
    assert_eq!(slipped as usize, truncated);
    assert_eq!((dropped + slipped) as usize + full, 800);
    // TCP is never limited.
    let mut s = tcp_from("127.0.0.10", d.dns).unwrap();
    assert!((0..30).all(|_| tcp_ask(&mut s, &q).is_some_and(|m| !m.answers.is_empty())));
}
