//! No heap allocation per query on the hit path of the fast answer path: a counting global
//! allocator (this test binary's own) watches the answer function, then the whole running
//! daemon while it answers real UDP queries.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::Name;
use mailzone::dns::fast;
use mailzone::metrics::Protocol;
use mailzone::zone::{Zone, ZoneSet};

/// Counts allocations everywhere (when `ALL` is set) or on threads that opted in.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static ALL: AtomicBool = AtomicBool::new(false);
/// The tests of this binary run one at a time: the counter is shared.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
thread_local! {
    static MINE: Cell<bool> = const { Cell::new(false) };
}

fn counted() {
    if ALL.load(Ordering::Relaxed) || MINE.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Plain queries of every kind the fast path answers: (name, type, EDNS payload).
const QUERIES: &[(&str, u16, Option<u16>)] = &[
    ("example.test", 15, Some(1232)),    // MX, with additional addresses
    ("ExAmPlE.TeSt", 15, None),          // 0x20
    ("example.test", 16, Some(4096)),    // TXT
    ("www.example.test", 1, Some(1232)), // CNAME chase
    ("mail.example.test", 28, None),     // NODATA
    ("nope.example.test", 1, Some(1232)), // NXDOMAIN
    ("a.b.nope.example.test", 16, None), // NXDOMAIN, pointers moved
    ("x.sub.example.test", 1, Some(1232)), // referral
    ("gmail.com", 1, Some(1232)),        // REFUSED
];

const ZONE: &str = "$ORIGIN example.test.
$TTL 300
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
@ MX 10 mail
@ TXT \"v=spf1 mx ~all\"
ns1 A 192.0.2.1
mail A 192.0.2.2
www CNAME mail
sub NS ns.sub
ns.sub A 192.0.2.9
";

fn request(name: &str, qtype: u16, edns: Option<u16>, id: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    if let Some(payload) = edns {
        m.extend_from_slice(&[0, 0, 41]);
        m.extend_from_slice(&payload.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    m
}

#[test]
fn the_fast_path_allocates_nothing_per_query() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let origin = Name::from_ascii("example.test.").unwrap();
    let zone = Arc::new(Zone::from_master_text(&origin, ZONE).unwrap());
    let zones = ZoneSet::from_zones(vec![zone], Vec::new());
    let requests: Vec<Vec<u8>> = (0..QUERIES.len() * 100)
        .map(|i| {
            let (name, qtype, edns) = QUERIES[i % QUERIES.len()];
            request(name, qtype, edns, i as u16)
        })
        .collect();
    let mut out = Vec::with_capacity(65_536);
    // A zone's answers are compiled once it has been asked often enough: that allocates,
    // once. Until then the general path answers (the fast path says `None`).
    for _ in 0..mailzone::zone::compiled::COMPILE_AFTER {
        fast::respond(&zones, &requests[0], Protocol::Udp, 1232, &mut out);
    }
    for r in &requests[..QUERIES.len()] {
        assert!(fast::respond(&zones, r, Protocol::Udp, 1232, &mut out).is_some());
    }
    let mut rcodes = Vec::with_capacity(requests.len() * 10);
    ALLOCATIONS.store(0, Ordering::Relaxed);
    MINE.with(|m| m.set(true));
    for _ in 0..10 {
        for r in &requests {
            let answered = fast::respond(&zones, r, Protocol::Udp, 1232, &mut out);
            rcodes.push(answered.map(|a| a.rcode));
        }
    }
    MINE.with(|m| m.set(false));
    let allocations = ALLOCATIONS.swap(0, Ordering::Relaxed);
    assert!(
        rcodes.iter().all(Option::is_some),
        "a query left the fast path"
    );
    // The set covers the kinds of answers (the test means something).
    for rcode in [
        ResponseCode::NoError,
        ResponseCode::NXDomain,
        ResponseCode::Refused,
    ] {
        assert!(rcodes.contains(&Some(rcode)));
    }
    assert_eq!(allocations, 0, "{} queries", rcodes.len());
}

#[test]
fn the_running_daemon_allocates_nothing_per_udp_query() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let d = TestDaemon::start(&[("example.test.zone", ZONE)]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let requests: Vec<Vec<u8>> = QUERIES
        .iter()
        .enumerate()
        .map(|(i, (name, qtype, edns))| request(name, *qtype, *edns, i as u16))
        .collect();
    let mut buf = vec![0u8; 4096];
    let mut ask = |r: &[u8]| {
        socket.send_to(r, d.dns).unwrap();
        let (n, _) = socket.recv_from(&mut buf).unwrap();
        assert_eq!(buf[..2], r[..2], "the reply to another query");
        assert!(n > 12);
    };
    // Warm up: compile the answers, and let every socket and thread reach its steady state.
    for _ in 0..50 {
        for r in &requests {
            ask(r);
        }
    }
    let rounds = 500;
    ALLOCATIONS.store(0, Ordering::Relaxed);
    ALL.store(true, Ordering::Relaxed);
    for _ in 0..rounds {
        for r in &requests {
            ask(r);
        }
    }
    ALL.store(false, Ordering::Relaxed);
    let allocations = ALLOCATIONS.swap(0, Ordering::Relaxed);
    let queries = rounds * requests.len();
    // Every thread of the process is counted, the daemon's timers and background jobs too:
    // a few allocations are theirs; one per query would be 4,500.
    assert!(
        allocations < queries / 100,
        "{allocations} allocations for {queries} queries"
    );
}
