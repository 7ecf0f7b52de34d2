//! The suite's own attack run: mangled UDP and TCP floods, API garbage, slow HTTP and TCP
//! hogging, each for a few seconds against one daemon with production-like limits (RRL on),
//! while an honest client on another loopback prefix (127.0.1.1) keeps asking. It asserts
//! the honest client got (nearly) all its answers and prints the figures:
//! `cargo test --test attack -- --nocapture`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const PHASE: Duration = Duration::from_secs(3);
const HONEST: &str = "127.0.1.1";

/// xorshift64: reproducible garbage without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seed_queries() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (name, qtype) in [
        ("example.test.", RecordType::A),
        ("example.test.", RecordType::MX),
        ("nowhere.example.test.", RecordType::TXT),
        ("example.org.", RecordType::A),
    ] {
        for edns in [Some(1232), None] {
            let ask = Ask {
                edns,
                ..Ask::default()
            };
            seeds.push(query_message(name, qtype, &ask).to_vec().unwrap());
        }
    }
    seeds
}

/// A seed query with a few bytes flipped, cut short or extended with noise.
fn mangle(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut q = seeds[rng.below(seeds.len())].clone();
    match rng.below(4) {
        0 => q.truncate(rng.below(q.len() + 1)),
        1 => q.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
        _ => {}
    }
    for _ in 0..1 + rng.below(4) {
        if !q.is_empty() {
            let i = rng.below(q.len());
            q[i] = rng.next() as u8;
        }
    }
    q
}

fn honest_udp(dns: SocketAddr, query: &[u8]) -> bool {
    let socket = udp_from(HONEST, Duration::from_millis(800));
    if socket.send_to(query, dns).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    socket
        .recv_from(&mut buf)
        .ok()
        .and_then(|(n, _)| Message::from_vec(&buf[..n]).ok())
        .is_some_and(|m| m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty())
}

fn honest_tcp(dns: SocketAddr, query: &[u8]) -> bool {
    tcp_from(HONEST, dns)
        .ok()
        .and_then(|mut s| tcp_ask(&mut s, query))
        .is_some_and(|m| m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty())
}

/// Runs `attackers` threads of `attack` for one phase while the honest client asks every
/// 100 ms (10 per second, under the RRL budget); returns (answered, asked).
fn phase(
    name: &str,
    attackers: usize,
    attack: impl Fn(usize, Instant, &AtomicU64) + Send + Sync + 'static,
    honest: impl Fn() -> bool,
) -> (u32, u32) {
    let deadline = Instant::now() + PHASE;
    let sent = Arc::new(AtomicU64::new(0));
    let attack = Arc::new(attack);
    let threads: Vec<_> = (0..attackers)
        .map(|i| {
            let (attack, sent) = (attack.clone(), sent.clone());
            thread::spawn(move || attack(i, deadline, &sent))
        })
        .collect();
    let (mut answered, mut asked) = (0, 0);
    while Instant::now() < deadline {
        let started = Instant::now();
        asked += 1;
        if honest() {
            answered += 1;
        }
        thread::sleep(Duration::from_millis(100).saturating_sub(started.elapsed()));
    }
    for t in threads {
        t.join().unwrap();
    }
    println!(
        "attack {name} ({} s): {} attack messages/connections; honest client answered {answered}/{asked}",
        PHASE.as_secs(),
        sent.load(Ordering::Relaxed)
    );
    (answered, asked)
}

fn assert_nearly_all(name: &str, (answered, asked): (u32, u32)) {
    assert!(asked >= 20, "{name}: only {asked} honest queries");
    assert!(
        answered * 100 >= asked * 95,
        "{name}: the honest client got {answered} of {asked}"
    );
}

#[test]
fn an_honest_client_keeps_being_answered_through_every_attack() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.dns.rrl.enabled = true;
        c.dns.tcp_max_connections = 128;
        c.http.max_connections = 64;
        c.http.header_read_timeout_secs = 1;
        c.http.body_read_timeout_secs = 1;
    });
    let (dns, http_addr) = (d.dns, d.http);
    let good = query_message("example.test.", RecordType::MX, &Ask::default())
        .to_vec()
        .unwrap();
    let mut figures = Vec::new();

    // 1. Mangled UDP from a spread of sources in 127.0.0.0/24.
    let seeds = Arc::new(seed_queries());
    let s = seeds.clone();
    let udp = phase(
        "udp-mutation",
        2,
        move |i, deadline, sent| {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 + i as u64);
            let sockets: Vec<_> = (0..8)
                .map(|h| {
                    udp_from(
                        &format!("127.0.0.{}", 10 + 8 * i + h),
                        Duration::from_millis(1),
                    )
                })
                .collect();
            while Instant::now() < deadline {
                for _ in 0..64 {
                    let q = mangle(&mut rng, &s);
                    let _ = sockets[rng.below(sockets.len())].send_to(&q, dns);
                }
                sent.fetch_add(64, Ordering::Relaxed);
                // About 30,000 packets per second in all: what a debug build absorbs on two
                // cores; beyond it the kernel drops datagrams for everyone alike.
                thread::sleep(Duration::from_millis(4));
            }
        },
        || honest_udp(dns, &good),
    );
    figures.push(("udp-mutation", udp));

    // 2. Mangled TCP: bogus lengths, cut messages, abrupt closes.
    let s = seeds.clone();
    let tcp = phase(
        "tcp-mutation",
        3,
        move |i, deadline, sent| {
            let mut rng = Rng(0x2545_f491_4f6c_dd1d + i as u64);
            while Instant::now() < deadline {
                let Ok(mut stream) = tcp_from(&format!("127.0.0.{}", 40 + i), dns) else {
                    continue;
                };
                let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
                for _ in 0..rng.below(8) {
                    let q = mangle(&mut rng, &s);
                    let len = if rng.below(4) == 0 {
                        rng.next() as u16
                    } else {
                        q.len() as u16
                    };
                    let mut out = len.to_be_bytes().to_vec();
                    out.extend_from_slice(&q);
                    if stream.write_all(&out).is_err() {
                        break;
                    }
                    let _ = stream.read(&mut [0u8; 512]);
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        },
        || honest_tcp(dns, &good),
    );
    figures.push(("tcp-mutation", tcp));

    // 3. API garbage: bad JSON, trailing data, huge bodies, bad tokens, noise.
    let garbage = phase(
        "api-garbage",
        2,
        move |i, deadline, sent| {
            let mut rng = Rng(0x1234_5678 + i as u64);
            let huge = "x".repeat(2 << 20);
            while Instant::now() < deadline {
                let request = match rng.below(5) {
                    0 => format!(
                        "POST /v1/zones HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 9\r\n\r\n{{\"name\":1"
                    ),
                    1 => format!(
                        "POST /v1/zones HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{huge}",
                        huge.len()
                    ),
                    2 => "POST /v1/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer  wrong\r\nContent-Length: 0\r\n\r\n".to_string(),
                    3 => format!(
                        "PATCH /v1/zones/example.test/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 12\r\n\r\n{{}} trailing"
                    ),
                    _ => (0..rng.below(300)).map(|_| (rng.next() as u8 % 94 + 32) as char).collect(),
                };
                if let Ok(mut s) = TcpStream::connect(http_addr) {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let _ = s.write_all(request.as_bytes());
                    let _ = s.read(&mut [0u8; 1024]);
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        },
        || honest_udp(dns, &good) && honest_tcp(dns, &good),
    );
    figures.push(("api-garbage", garbage));
    let (status, _) = http(http_addr, "GET", "/v1/status", None, None);
    assert_eq!(status, 200, "the API serves after the garbage");

    // 4. Slow HTTP: half-sent requests, many more than the connection cap.
    let slow = phase(
        "slow-http",
        2,
        move |_, deadline, sent| {
            let mut held = Vec::new();
            while Instant::now() < deadline {
                if held.len() < 200
                    && let Ok(mut s) = TcpStream::connect(http_addr)
                {
                    let _ = s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n");
                    held.push(s);
                    sent.fetch_add(1, Ordering::Relaxed);
                } else {
                    thread::sleep(Duration::from_millis(10));
                }
            }
        },
        || honest_udp(dns, &good),
    );
    figures.push(("slow-http", slow));
    // The header timeout (1 s) freed the slots.
    let (status, _) = http(http_addr, "GET", "/healthz", None, None);
    assert_eq!(
        status, 200,
        "HTTP serves again once the slow clients are cut"
    );

    // 5. TCP hogging: one address opens as many connections as it can, others fill the cap.
    let hog = phase(
        "tcp-hogging",
        2,
        move |i, deadline, sent| {
            let mut held = Vec::new();
            let query = query_message("example.test.", RecordType::A, &Ask::default())
                .to_vec()
                .unwrap();
            let sources: Vec<String> = if i == 0 {
                vec!["127.0.0.1".into(); 300]
            } else {
                (0..300)
                    .map(|k| format!("127.0.0.{}", 60 + k % 20))
                    .collect()
            };
            for source in sources {
                if Instant::now() >= deadline {
                    break;
                }
                if let Ok(mut s) = tcp_from(&source, dns) {
                    let _ = tcp_ask(&mut s, &query);
                    held.push(s);
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            thread::sleep(deadline.saturating_duration_since(Instant::now()));
        },
        || honest_tcp(dns, &good),
    );
    figures.push(("tcp-hogging", hog));

    for (name, figure) in figures {
        assert_nearly_all(name, figure);
    }
    // Still serving, and nothing panicked on the way.
    assert!(honest_udp(dns, &good));
    let body = d.daemon().shared().metrics.render();
    for line in body.lines().filter(|l| {
        l.starts_with("mailzone_client_problems_total") || l.starts_with("mailzone_dns_rrl")
    }) {
        println!("{line}");
    }
    assert_eq!(
        metric(
            &body,
            "mailzone_client_problems_total{kind=\"dns_answer_panic\"}"
        ),
        0.0
    );
}
